//! Every pool of the process: the one of `DESTINATION`, the list of `POOLS`, or the sockets of a
//! `POOLS=dir:` directory, re-read while serving.
//!
//! The list is a published snapshot: a request takes it whole (one `Rc`), and never reads a
//! directory or builds a pool. With `dir:`, one discovery task re-reads the directory every
//! [`REREAD`], and at once when a request met a socket gone (`ENOENT`) or a name it does not
//! know ([`PoolSet::nudge`]), at most once per [`REREAD_MIN`]; it builds the new pools (from the
//! requests rendered at start, [`Requests`]) and swaps in the new list. So a pool php-fpm has
//! just made answers 404 until that re-read.
//!
//! Ownership flows one way: the server's `Shared` owns the set; the set owns its pools' keepers
//! (one task per pool, holding the pool; dropped with it) and the discovery task. The tasks do
//! not own the set (the discovery task holds a `Weak`), and the set does not own the executor
//! that runs them (a `Weak`): the executor owns the connection tasks, which own `Shared`.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use event_listener::Event;
use log::{info, warn};
use smol::{future, LocalExecutor, Task, Timer};

use crate::config::{Config, Destination, Pools};
use crate::deadline;
use crate::os::discover;
use crate::throttle::{Gate, Throttle};

use super::pool::{Pool, Requests};

/// How often the discovery task re-reads a `POOLS=dir:` directory: pools added or removed by
/// a php-fpm reload appear and vanish within this.
const REREAD: Duration = Duration::from_secs(10);

/// The shortest time between two readings: a client asking for names that do not exist, or
/// many probes meeting a socket gone, cost at most one directory read per this.
const REREAD_MIN: Duration = Duration::from_secs(1);

/// A pool and its keeper.
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
    /// `POOLS=dir:`: re-read by the discovery task.
    Dir(Discovery),
}

/// The state of a `POOLS=dir:` directory's reading.
struct Discovery {
    dir: PathBuf,
    /// Why the last reading failed (its failure line), `None` when it read the directory.
    unreadable: RefCell<Option<String>>,
    /// What the last reading left out, so that it is logged when it changes.
    left_out: RefCell<Option<String>>,
    unreadable_log: Throttle,
}

/// A call for an early re-read of a `dir:` directory, shared by the set, its pools (a probe
/// that meets a socket gone calls) and the discovery task (which answers).
#[derive(Default)]
pub(crate) struct Nudge {
    asked: Cell<bool>,
    event: Event,
}

impl Nudge {
    /// Asks for a re-read now, or as soon as [`REREAD_MIN`] has passed since the last one.
    pub(crate) fn ask(&self) {
        if !self.asked.replace(true) {
            self.event.notify(1);
        }
    }
}

/// What the set and its discovery task share.
struct State {
    origin: Origin,
    /// The pools and their keepers, in name order: changed only by the discovery task (and the
    /// stop).
    entries: RefCell<Vec<(String, Entry)>>,
    /// The pools as requests see them, in name order: replaced whole after each change.
    published: RefCell<Rc<[Rc<Pool>]>>,
    config: Config,
    requests: Requests,
    /// Runs the keepers; not owned (see the module's doc).
    ex: Weak<LocalExecutor<'static>>,
    /// Whether the keepers were stopped (no new ones start).
    stopped: Cell<bool>,
    nudge: Rc<Nudge>,
}

/// The pools, in name order.
pub(crate) struct PoolSet {
    state: Rc<State>,
    /// The discovery task of a `dir:` set (`None` otherwise, or once stopped).
    discovery: RefCell<Option<Task<()>>>,
}

/// What a request that names a pool finds.
pub(crate) enum Lookup {
    Found(Rc<Pool>),
    /// Not a pool of this process: the known names, sorted.
    Unknown(Vec<String>),
}

impl PoolSet {
    /// The pools of `config` (a `dir:` directory read now); keepers and the discovery task
    /// run on `ex`.
    pub(crate) fn new(config: &Config, ex: &Rc<LocalExecutor<'static>>) -> Self {
        let state = Rc::new(State {
            origin: match &config.pools {
                Pools::One => Origin::One,
                Pools::Named(_) => Origin::Named,
                Pools::Dir(dir) => Origin::Dir(Discovery {
                    dir: dir.clone(),
                    unreadable: RefCell::new(None),
                    left_out: RefCell::new(None),
                    unreadable_log: Throttle::new(Duration::from_secs(60), 1),
                }),
            },
            entries: RefCell::new(Vec::new()),
            published: RefCell::new(Rc::from(Vec::new())),
            config: config.clone(),
            requests: Requests::new(config),
            ex: Rc::downgrade(ex),
            stopped: Cell::new(false),
            nudge: Rc::default(),
        });
        match &config.pools {
            Pools::One => state.add(
                String::new(),
                None,
                &config.destination,
                config.status_listen.as_ref(),
            ),
            Pools::Named(named) => {
                for (name, at) in named {
                    state.add(name.clone(), Some(name.clone()), &at.main, at.lane.as_ref());
                }
            }
            Pools::Dir(_) => state.reread(Instant::now()),
        }
        state.publish();
        let discovery = matches!(state.origin, Origin::Dir(_)).then(|| {
            ex.spawn(discover(
                Rc::downgrade(&state),
                Rc::clone(&state.nudge),
                Instant::now(),
            ))
        });
        Self {
            state,
            discovery: RefCell::new(discovery),
        }
    }

    /// Whether the process has several named pools (`POOLS`), rather than `DESTINATION`.
    pub(crate) fn named(&self) -> bool {
        !matches!(self.state.origin, Origin::One)
    }

    /// The one pool of `DESTINATION` (`None` with `POOLS`).
    pub(crate) fn one(&self) -> Option<Rc<Pool>> {
        match self.state.origin {
            Origin::One => self.published().first().cloned(),
            _ => None,
        }
    }

    /// Every pool, in name order, as last published. An empty `dir:` list asks for a re-read
    /// (php-fpm may have made its sockets since).
    pub(crate) fn all(&self) -> Rc<[Rc<Pool>]> {
        let pools = self.published();
        if pools.is_empty() {
            self.nudge();
        }
        pools
    }

    /// The pool `name`; an unknown name asks a `dir:` set for a re-read (it may answer once
    /// the discovery task has read the directory).
    pub(crate) fn get(&self, name: &str) -> Lookup {
        let pools = self.published();
        let found = pools
            .binary_search_by(|pool| pool.name().unwrap_or_default().cmp(name))
            .ok()
            .and_then(|at| pools.get(at));
        if let Some(pool) = found {
            return Lookup::Found(Rc::clone(pool));
        }
        self.nudge();
        Lookup::Unknown(
            pools
                .iter()
                .map(|pool| pool.name().unwrap_or_default().to_owned())
                .collect(),
        )
    }

    /// Whether the pools are the sockets of a `dir:` directory: one whose socket is missing
    /// (`ENOENT`) was dropped by php-fpm on a reload, so it is no failing pool (its probe has
    /// asked the discovery task for a re-read, which drops it).
    pub(crate) fn discovered(&self) -> bool {
        matches!(self.state.origin, Origin::Dir(_))
    }

    /// Asks the discovery task (of a `dir:` set) for a re-read.
    fn nudge(&self) {
        if self.discovered() {
            self.state.nudge.ask();
        }
    }

    fn published(&self) -> Rc<[Rc<Pool>]> {
        Rc::clone(&self.state.published.borrow())
    }

    /// The pools for the start-up line: the one destination, or the names and destinations
    /// (the first ten).
    pub(crate) fn describe(&self) -> String {
        let pools = self.published();
        if let (Origin::One, Some(pool)) = (&self.state.origin, pools.first()) {
            return pool.label().to_owned() + &lane_text(pool);
        }
        let mut text = match &self.state.origin {
            Origin::Dir(discovery) => {
                format!("the sockets of {} (POOLS=dir:): ", discovery.dir.display())
            }
            _ => "POOLS ".to_owned(),
        };
        let shown: Vec<String> = pools
            .iter()
            .take(10)
            .map(|pool| {
                let name = pool.name().unwrap_or_default();
                format!("{name}={}{}", pool.label(), lane_text(pool))
            })
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
        match &self.state.origin {
            Origin::Dir(discovery) => match &*discovery.unreadable.borrow() {
                Some(reason) => reason.clone(),
                None => discover::none_found(&discovery.dir),
            },
            _ => "connect_failed: no pool configured (POOLS)".to_owned(),
        }
    }

    /// Stops the discovery and every keeper (closing kept connections); none starts again:
    /// the server's stop.
    pub(crate) fn stop(&self) {
        self.discovery.borrow_mut().take();
        self.state.stopped.set(true);
        for (_, entry) in self.state.entries.borrow_mut().iter_mut() {
            entry.keeper = None;
        }
    }
}

impl State {
    /// Adds a pool (not yet published), with its status lane `lane`.
    fn add(
        &self,
        key: String,
        name: Option<String>,
        destination: &Destination,
        lane: Option<&Destination>,
    ) {
        let rediscover = match self.origin {
            Origin::Dir(_) => Some(Rc::clone(&self.nudge)),
            _ => None,
        };
        let at = (destination, lane);
        let pool = Pool::new(&self.config, name, at, &self.requests, rediscover);
        let pool = Rc::new(pool);
        let keeper = match (self.stopped.get(), self.ex.upgrade()) {
            (false, Some(ex)) => {
                let pool = Rc::clone(&pool);
                Some(ex.spawn(async move { pool.keep().await }))
            }
            _ => None,
        };
        let mut entries = self.entries.borrow_mut();
        let at = entries.partition_point(|(known, _)| *known < key);
        entries.insert(at, (key, Entry { pool, keeper }));
    }

    /// Makes the entries the list requests see.
    fn publish(&self) {
        let pools: Vec<Rc<Pool>> = self
            .entries
            .borrow()
            .iter()
            .map(|(_, entry)| Rc::clone(&entry.pool))
            .collect();
        *self.published.borrow_mut() = Rc::from(pools);
    }

    /// Reads the `dir:` directory: new sockets become pools, pools whose socket is gone are
    /// dropped (with their counters and kept connection); the others keep their state. A
    /// directory that is gone drops every pool; another error keeps the last list. Publishes
    /// the list when it changed.
    fn reread(&self, now: Instant) {
        let Origin::Dir(discovery) = &self.origin else {
            return;
        };
        let dir = &discovery.dir;
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
                if unreadable.missing && !self.entries.borrow().is_empty() {
                    self.entries.borrow_mut().clear();
                    self.publish();
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
            .entries
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
            self.entries
                .borrow_mut()
                .retain(|(name, _)| !gone.contains(name));
        }
        let mut added = Vec::new();
        for (name, path) in &found.pools {
            let known = self.entries.borrow().iter().any(|(n, _)| n == name);
            if !known {
                let (destination, lane) = (Destination::Unix(path.clone()), lane_of(name));
                self.add(
                    name.clone(),
                    Some(name.clone()),
                    &destination,
                    lane.as_ref(),
                );
                added.push(name.clone());
            }
        }
        if !added.is_empty() {
            info!("pools found in {}: {}", dir.display(), added.join(", "));
        }
        if !gone.is_empty() || !added.is_empty() {
            self.publish();
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

/// The discovery task of a `dir:` set: re-reads the directory [`REREAD`] after the last
/// reading (made at `last`), or at a nudge, but never within [`REREAD_MIN`] of the last; ends
/// when the set is gone.
async fn discover(state: Weak<State>, nudge: Rc<Nudge>, mut last: Instant) {
    loop {
        let listener = nudge.event.listen();
        if !nudge.asked.get() {
            future::or(listener, async {
                Timer::at(deadline::later(last, REREAD)).await;
            })
            .await;
        }
        Timer::at(deadline::later(last, REREAD_MIN)).await;
        nudge.asked.set(false);
        let Some(state) = state.upgrade() else {
            return;
        };
        last = Instant::now();
        state.reread(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn names(set: &PoolSet) -> Vec<String> {
        set.all()
            .iter()
            .map(|pool| pool.name().unwrap_or_default().to_owned())
            .collect()
    }

    /// A request never reads the directory: a socket made since the last reading is unknown to
    /// it (404), and its name asks the discovery task, which reads the directory at once, but
    /// never within a second of the last reading (nor waits the 10 s of the period).
    #[test]
    fn requests_read_no_directory_and_an_unknown_name_asks_for_a_reading() {
        let dir = std::env::temp_dir().join(format!("fch-pools-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let _www = UnixListener::bind(dir.join("www.sock")).unwrap();
        let pools = format!("dir:{}", dir.display());
        let env = |name: &str| (name == "POOLS").then(|| pools.clone().into());
        let Ok(crate::config::Command::Serve(config)) = crate::config::parse(&[], env) else {
            panic!("the test's config");
        };
        let ex: Rc<LocalExecutor<'static>> = Rc::new(LocalExecutor::new());
        smol::block_on(ex.run(async {
            let before = Instant::now();
            let set = PoolSet::new(&config, &ex);
            assert_eq!(names(&set), ["www"]);
            let _api = UnixListener::bind(dir.join("api.sock")).unwrap();
            let Lookup::Unknown(known) = set.get("api") else {
                panic!("a request read the directory");
            };
            assert_eq!(known, ["www"]);
            while !matches!(set.get("api"), Lookup::Found(_)) {
                assert!(
                    before.elapsed() < Duration::from_secs(5),
                    "the discovery task did not read the directory when asked"
                );
                Timer::after(Duration::from_millis(10)).await;
            }
            let found = before.elapsed();
            assert!(found >= REREAD_MIN, "read again after {found:?}");
            assert_eq!(names(&set), ["api", "www"]);
            set.stop();
        }));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
