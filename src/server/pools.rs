//! Every pool of the process: the one of `DESTINATION`, the list of `POOLS`, or the sockets of a
//! `POOLS=dir:` directory, re-read while serving. Each pool's keeper (its busy connection) is a
//! task held here, dropped with the pool.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};
use smol::{LocalExecutor, Task};

use crate::config::{Config, Destination, Pools};
use crate::os::discover;
use crate::throttle::{Gate, Throttle};

use super::pool::Pool;

/// How old the list of a `POOLS=dir:` directory may be before a request re-reads it: pools
/// added or removed by a php-fpm reload appear and vanish within this.
const REREAD: Duration = Duration::from_secs(10);

/// How often a request naming an unknown pool may re-read the directory (a client asking for
/// names that do not exist must not cost a directory read each).
const REREAD_UNKNOWN: Duration = Duration::from_secs(1);

struct Entry {
    pool: Rc<Pool>,
    /// The pool's keeper (`None` once stopped); dropping it closes a kept connection.
    keeper: Option<Task<()>>,
}

/// Where the pools come from.
enum Origin {
    /// `DESTINATION`: one pool, unnamed.
    One,
    /// `POOLS=name=destination,...`: fixed.
    Named,
    /// `POOLS=dir:`: re-read when older than [`REREAD`].
    Dir(Discovery),
}

/// The state of a `POOLS=dir:` directory's reading.
struct Discovery {
    dir: PathBuf,
    /// When it was last read.
    read: Cell<Option<Instant>>,
    /// Why the last reading failed (its failure line), `None` when it read the directory.
    unreadable: RefCell<Option<String>>,
    /// What the last reading left out, so that it is logged when it changes.
    left_out: RefCell<Option<String>>,
    unreadable_log: Throttle,
}

/// The pools, in name order.
pub(crate) struct PoolSet {
    origin: Origin,
    pools: RefCell<Vec<(String, Entry)>>,
    config: Config,
    ex: Rc<LocalExecutor<'static>>,
    /// Whether the keepers were stopped (no new ones start).
    stopped: Cell<bool>,
}

/// What a request that names a pool finds.
pub(crate) enum Lookup {
    Found(Rc<Pool>),
    /// Not a pool of this process: the known names, sorted.
    Unknown(Vec<String>),
}

impl PoolSet {
    /// The pools of `config`; keepers run on `ex`.
    pub(crate) fn new(config: &Config, ex: Rc<LocalExecutor<'static>>) -> Self {
        let set = Self {
            origin: match &config.pools {
                Pools::One => Origin::One,
                Pools::Named(_) => Origin::Named,
                Pools::Dir(dir) => Origin::Dir(Discovery {
                    dir: dir.clone(),
                    read: Cell::new(None),
                    unreadable: RefCell::new(None),
                    left_out: RefCell::new(None),
                    unreadable_log: Throttle::new(Duration::from_secs(60), 1),
                }),
            },
            pools: RefCell::new(Vec::new()),
            config: config.clone(),
            ex,
            stopped: Cell::new(false),
        };
        match &config.pools {
            Pools::One => set.add(
                String::new(),
                None,
                &config.destination,
                config.status_listen.as_ref(),
            ),
            Pools::Named(named) => {
                for (name, at) in named {
                    set.add(name.clone(), Some(name.clone()), &at.main, at.lane.as_ref());
                }
            }
            Pools::Dir(_) => set.reread(Instant::now()),
        }
        set
    }

    fn add(
        &self,
        key: String,
        name: Option<String>,
        destination: &Destination,
        lane: Option<&Destination>,
    ) {
        let pool = Rc::new(Pool::new(&self.config, name, destination, lane));
        let keeper = self.spawn_keeper(&pool);
        let mut pools = self.pools.borrow_mut();
        let at = pools.partition_point(|(known, _)| *known < key);
        pools.insert(at, (key, Entry { pool, keeper }));
    }

    fn spawn_keeper(&self, pool: &Rc<Pool>) -> Option<Task<()>> {
        if self.stopped.get() {
            return None;
        }
        let pool = Rc::clone(pool);
        Some(self.ex.spawn(async move { pool.keep().await }))
    }

    /// Whether the process has several named pools (`POOLS`), rather than `DESTINATION`.
    pub(crate) fn named(&self) -> bool {
        !matches!(self.origin, Origin::One)
    }

    /// The one pool of `DESTINATION` (`None` with `POOLS`).
    pub(crate) fn one(&self) -> Option<Rc<Pool>> {
        match self.origin {
            Origin::One => self.pools.borrow().first().map(|(_, e)| Rc::clone(&e.pool)),
            _ => None,
        }
    }

    /// Every pool, in name order (a `dir:` list re-read first if it is old, or empty: php-fpm
    /// may have made its sockets since).
    pub(crate) fn all(&self) -> Vec<Rc<Pool>> {
        if !self.refresh(REREAD) && self.pools.borrow().is_empty() {
            self.refresh(REREAD_UNKNOWN);
        }
        self.pools
            .borrow()
            .iter()
            .map(|(_, e)| Rc::clone(&e.pool))
            .collect()
    }

    /// The pool `name` (a `dir:` list re-read first if it is old, or if `name` is unknown).
    pub(crate) fn get(&self, name: &str) -> Lookup {
        self.refresh(REREAD);
        if let Some(pool) = self.find(name) {
            return Lookup::Found(pool);
        }
        if self.refresh(REREAD_UNKNOWN) {
            if let Some(pool) = self.find(name) {
                return Lookup::Found(pool);
            }
        }
        Lookup::Unknown(self.pools.borrow().iter().map(|(n, _)| n.clone()).collect())
    }

    fn find(&self, name: &str) -> Option<Rc<Pool>> {
        let pools = self.pools.borrow();
        let at = pools
            .binary_search_by(|(known, _)| known.as_str().cmp(name))
            .ok()?;
        pools.get(at).map(|(_, e)| Rc::clone(&e.pool))
    }

    /// After an all-pools probe in which some pool's socket was missing (`ENOENT`): re-reads a
    /// `dir:` list (at most once a second), so that a pool php-fpm dropped on a reload is not
    /// reported failing; returns whether `name` is still a pool.
    pub(crate) fn still_there(&self, name: &str) -> bool {
        self.refresh(REREAD_UNKNOWN);
        self.find(name).is_some()
    }

    /// Re-reads a `dir:` list if it is older than `age`; returns whether it did.
    fn refresh(&self, age: Duration) -> bool {
        let Origin::Dir(Discovery { read, .. }) = &self.origin else {
            return false;
        };
        let now = Instant::now();
        if read
            .get()
            .is_some_and(|read| now.saturating_duration_since(read) < age)
        {
            return false;
        }
        self.reread(now);
        true
    }

    /// Reads the `dir:` directory: new sockets become pools, pools whose socket is gone are
    /// dropped (with their counters and kept connection); the others keep their state. A
    /// directory that is gone drops every pool; another error keeps the last list.
    fn reread(&self, now: Instant) {
        let Origin::Dir(discovery) = &self.origin else {
            return;
        };
        let dir = &discovery.dir;
        discovery.read.set(Some(now));
        let found = match discover::sockets(dir) {
            Ok(found) => found,
            Err(unreadable) => {
                if let Gate::Log { .. } = discovery.unreadable_log.gate(now) {
                    let what = match unreadable.missing {
                        true => "probing no pool until it exists",
                        false => "keeping the pools read before",
                    };
                    warn!("{}: {what} (said once a minute)", unreadable.message);
                }
                if unreadable.missing {
                    self.pools.borrow_mut().clear();
                }
                discovery.unreadable.replace(Some(unreadable.reason()));
                return;
            }
        };
        discovery.unreadable.replace(None);
        let left_out = found.left_out();
        if left_out != *discovery.left_out.borrow() {
            if let Some(left_out) = &left_out {
                warn!("POOLS=dir:{}: left out {left_out}", dir.display());
            }
            *discovery.left_out.borrow_mut() = left_out;
        }
        // A pool whose status lane came or went (a reload that changed `pm.status_listen`) is
        // made again, with it.
        let lane_of = |name: &str| {
            found
                .lane(name)
                .map(|path| Destination::Unix(path.to_owned()))
        };
        let gone: Vec<String> = self
            .pools
            .borrow()
            .iter()
            .filter(|(name, entry)| {
                !found.pools.iter().any(|(n, _)| n == name)
                    || entry.pool.lane() != lane_of(name).as_ref()
            })
            .map(|(name, _)| name.clone())
            .collect();
        if !gone.is_empty() {
            info!("pools gone from {}: {}", dir.display(), gone.join(", "));
            self.pools
                .borrow_mut()
                .retain(|(name, _)| !gone.contains(name));
        }
        let mut added = Vec::new();
        for (name, path) in &found.pools {
            if self.find(name).is_none() {
                let lane = lane_of(name);
                self.add(
                    name.clone(),
                    Some(name.clone()),
                    &Destination::Unix(path.clone()),
                    lane.as_ref(),
                );
                added.push(name.clone());
            }
        }
        if !added.is_empty() {
            info!("pools found in {}: {}", dir.display(), added.join(", "));
        }
    }

    /// The pools for the start-up line: the one destination, or the names and destinations
    /// (the first ten).
    pub(crate) fn describe(&self) -> String {
        let pools = self.pools.borrow();
        if let (Origin::One, Some((_, entry))) = (&self.origin, pools.first()) {
            return entry.pool.label().to_owned() + &lane_text(&entry.pool);
        }
        let mut text = match &self.origin {
            Origin::Dir(discovery) => {
                format!("the sockets of {} (POOLS=dir:): ", discovery.dir.display())
            }
            _ => "POOLS ".to_owned(),
        };
        let shown: Vec<String> = pools
            .iter()
            .take(10)
            .map(|(name, entry)| format!("{name}={}{}", entry.pool.label(), lane_text(&entry.pool)))
            .collect();
        text.push_str(&shown.join(", "));
        if pools.len() > shown.len() {
            text.push_str(&format!(
                " and {} more",
                pools.len().saturating_sub(shown.len())
            ));
        }
        if pools.is_empty() {
            text.push_str("none yet");
        }
        text
    }

    /// Why there is no pool: the last reading of a `dir:` directory (found no socket, or could
    /// not read it); it is not read again for this.
    pub(crate) fn none_found(&self) -> String {
        match &self.origin {
            Origin::Dir(discovery) => match &*discovery.unreadable.borrow() {
                Some(reason) => reason.clone(),
                None => discover::none_found(&discovery.dir),
            },
            _ => "connect_failed: no pool configured (POOLS)".to_owned(),
        }
    }

    /// Stops every keeper (closing kept connections) and starts no more: the server's stop.
    pub(crate) fn stop_keepers(&self) {
        self.stopped.set(true);
        for (_, entry) in self.pools.borrow_mut().iter_mut() {
            entry.keeper = None;
        }
    }
}

/// ` (status page through LANE)` for a pool with a status lane, for the start-up line.
fn lane_text(pool: &Pool) -> String {
    match pool.lane() {
        Some(lane) => format!(" (status page through {lane})"),
        None => String::new(),
    }
}
