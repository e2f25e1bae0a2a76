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
enum Kind {
    /// `DESTINATION`: one pool, unnamed.
    One,
    /// `POOLS=name=destination,...`: fixed.
    Named,
    /// `POOLS=dir:`: re-read when older than [`REREAD`].
    Dir {
        dir: PathBuf,
        read: Cell<Option<Instant>>,
        failed_log: Throttle,
    },
}

/// The pools, in name order.
pub(crate) struct PoolSet {
    kind: Kind,
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
            kind: match &config.pools {
                Pools::One => Kind::One,
                Pools::Named(_) => Kind::Named,
                Pools::Dir(dir) => Kind::Dir {
                    dir: dir.clone(),
                    read: Cell::new(None),
                    failed_log: Throttle::new(Duration::from_secs(60), 1),
                },
            },
            pools: RefCell::new(Vec::new()),
            config: config.clone(),
            ex,
            stopped: Cell::new(false),
        };
        match &config.pools {
            Pools::One => set.add(String::new(), None, &config.destination),
            Pools::Named(named) => {
                for (name, destination) in named {
                    set.add(name.clone(), Some(name.clone()), destination);
                }
            }
            Pools::Dir(_) => set.reread(Instant::now()),
        }
        set
    }

    fn add(&self, key: String, name: Option<String>, destination: &Destination) {
        let pool = Rc::new(Pool::new(&self.config, name, destination));
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
        !matches!(self.kind, Kind::One)
    }

    /// The one pool of `DESTINATION` (`None` with `POOLS`).
    pub(crate) fn one(&self) -> Option<Rc<Pool>> {
        match self.kind {
            Kind::One => self.pools.borrow().first().map(|(_, e)| Rc::clone(&e.pool)),
            _ => None,
        }
    }

    /// Every pool, in name order (a `dir:` list re-read first if it is old).
    pub(crate) fn all(&self) -> Vec<Rc<Pool>> {
        self.refresh(REREAD);
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

    /// Re-reads a `dir:` list if it is older than `age`; returns whether it did.
    fn refresh(&self, age: Duration) -> bool {
        let Kind::Dir { read, .. } = &self.kind else {
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
    /// dropped (with their counters and kept connection); the others keep their state.
    fn reread(&self, now: Instant) {
        let Kind::Dir {
            dir,
            read,
            failed_log,
        } = &self.kind
        else {
            return;
        };
        read.set(Some(now));
        let found = match discover::sockets(dir) {
            Ok(found) => found,
            Err(error) => {
                if let Gate::Log { .. } = failed_log.gate(now) {
                    warn!("{error}: probing no pool until it can be read (said once a minute)");
                }
                self.pools.borrow_mut().clear();
                return;
            }
        };
        if !found.over_cap.is_empty() || !found.unnamed.is_empty() {
            if let Gate::Log { .. } = failed_log.gate(now) {
                warn!(
                    "POOLS=dir:{}: left out {} socket(s) past the cap of {} pools ({}) and {} whose name is not a pool name ({}); said once a minute",
                    dir.display(),
                    found.over_cap.len(),
                    crate::config::MAX_POOLS,
                    found.over_cap.join(", "),
                    found.unnamed.len(),
                    found.unnamed.join(", "),
                );
            }
        }
        let gone: Vec<String> = self
            .pools
            .borrow()
            .iter()
            .filter(|(name, _)| !found.pools.iter().any(|(n, _)| n == name))
            .map(|(name, _)| name.clone())
            .collect();
        if !gone.is_empty() {
            info!("pools gone from {}: {}", dir.display(), gone.join(", "));
            self.pools
                .borrow_mut()
                .retain(|(name, _)| !gone.contains(name));
        }
        let mut added = Vec::new();
        for (name, path) in found.pools {
            if self.find(&name).is_none() {
                self.add(name.clone(), Some(name.clone()), &Destination::Unix(path));
                added.push(name);
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
        if let (Kind::One, Some((_, entry))) = (&self.kind, pools.first()) {
            return entry.pool.label().to_owned();
        }
        let mut text = match &self.kind {
            Kind::Dir { dir, .. } => format!("the sockets of {} (POOLS=dir:): ", dir.display()),
            _ => "POOLS ".to_owned(),
        };
        let shown: Vec<String> = pools
            .iter()
            .take(10)
            .map(|(name, entry)| format!("{name}={}", entry.pool.label()))
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

    /// Why there is no pool (a `dir:` directory without sockets, or unreadable).
    pub(crate) fn none_found(&self) -> String {
        match &self.kind {
            Kind::Dir { dir, .. } => match discover::sockets(dir) {
                Err(error) => error,
                Ok(_) => format!(
                    "no php-fpm socket in {} (POOLS=dir:); is php-fpm running, and its listen = there?",
                    dir.display()
                ),
            },
            _ => "no pool configured (POOLS)".to_owned(),
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
