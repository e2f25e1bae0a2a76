//! `POOLS=dir:/path`: the Unix sockets in a directory, as named pools. A socket named
//! `NAME.status.sock` beside `NAME.sock` is that pool's status lane (php-fpm's
//! `pm.status_listen`), not a pool of its own ([`pair_lanes`]).

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::config::{pool_name_ok, MAX_POOLS};

/// The sockets found in a directory, and what was left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// `(name, socket path)`, in name order, at most [`MAX_POOLS`].
    pub pools: Vec<(String, PathBuf)>,
    /// `(pool name, status lane path)`, in name order: the pools of `pools` that have one.
    pub lanes: Vec<(String, PathBuf)>,
    /// Status lanes without their pool's socket (`NAME.status` without `NAME`; for the log).
    pub lanes_alone: Vec<String>,
    /// Sockets whose file name is not a pool name (listed for the log).
    pub unnamed: Vec<String>,
    /// Sockets past [`MAX_POOLS`] (their names, for the log).
    pub over_cap: Vec<String>,
    /// Sockets left out because another takes their pool name: `www` beside `www.sock`, which
    /// is kept (the name php-fpm's own configurations give a socket). Their file names, for the
    /// log.
    pub shadowed: Vec<String>,
    /// Whether the directory has more than [`MAX_ENTRIES`] entries: only those were looked at.
    pub entries_cut: bool,
}

impl Found {
    /// The status lane of the pool `name`, if it has one.
    pub fn lane(&self, name: &str) -> Option<&Path> {
        let at = self
            .lanes
            .binary_search_by(|(pool, _)| pool.as_str().cmp(name))
            .ok()?;
        self.lanes.get(at).map(|(_, path)| path.as_path())
    }

    /// What was left out, for the log (`None`: nothing): at most ten names of each kind.
    pub fn left_out(&self) -> Option<String> {
        let past_cap = format!("socket(s) past the cap of {MAX_POOLS} pools");
        let kinds: [(&[String], &str); 4] = [
            (&self.over_cap, &past_cap),
            (&self.unnamed, "socket(s) whose name is not a pool name"),
            (
                &self.shadowed,
                "socket(s) whose pool name a NAME.sock beside them takes",
            ),
            (
                &self.lanes_alone,
                "status lane socket(s) without their pool's socket NAME.sock",
            ),
        ];
        let mut parts: Vec<String> = kinds
            .iter()
            .filter(|(names, _)| !names.is_empty())
            .map(|(names, what)| format!("{} {what} ({})", names.len(), first_ten(names)))
            .collect();
        if self.entries_cut {
            parts.push(format!(
                "every entry past the first {MAX_ENTRIES} of the directory (not looked at)"
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// Up to ten names, then how many more.
fn first_ten(names: &[String]) -> String {
    let shown: Vec<&str> = names.iter().take(10).map(String::as_str).collect();
    let more = names.len().saturating_sub(shown.len());
    match more {
        0 => shown.join(", "),
        _ => format!("{} and {more} more", shown.join(", ")),
    }
}

/// The line of a `POOLS=dir:` directory where no pool was found.
pub fn none_found(dir: &Path) -> String {
    format!(
        "connect_failed: no php-fpm socket in {} (POOLS=dir:); is php-fpm running, with its pools' listen = there?",
        dir.display()
    )
}

/// Most directory entries looked at: a directory of sockets is small; a wrong `dir:` pointing at
/// a huge directory must not cost a long pause of the one thread.
const MAX_ENTRIES: usize = 4096;

/// Why a directory could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable {
    /// It does not exist (php-fpm stopped and took it away, or it was never made).
    pub missing: bool,
    /// What happened, naming the directory and `POOLS=dir:`.
    pub message: String,
}

impl Unreadable {
    /// The failure line of a probe of such a directory: `connect_failed: ` and the message.
    pub fn reason(&self) -> String {
        format!("connect_failed: {}", self.message)
    }
}

/// Whether a socket's file name ends in `.sock`.
fn ends_in_sock(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "sock")
}

/// The Unix sockets in `dir`, each named after its file less `.sock`; when both `NAME` and
/// `NAME.sock` exist, the pool `NAME` is `NAME.sock` and the other is left out, in
/// [`Found::shadowed`].
pub fn sockets(dir: &Path) -> Result<Found, Unreadable> {
    let entries = fs::read_dir(dir).map_err(|error| Unreadable {
        missing: error.kind() == std::io::ErrorKind::NotFound,
        message: format!(
            "cannot read the directory {} (POOLS=dir:): {error}",
            dir.display()
        ),
    })?;
    let mut found = Found::default();
    let mut entries = entries.peekable();
    for entry in entries.by_ref().take(MAX_ENTRIES).flatten() {
        // The type without following a link: a socket is a socket file, not a link to one.
        let is_socket = entry.file_type().is_ok_and(|t| t.is_socket());
        if !is_socket {
            continue;
        }
        let file = entry.file_name();
        let file = file.to_string_lossy();
        let name = file.strip_suffix(".sock").unwrap_or(&file);
        if pool_name_ok(name) {
            found.pools.push((name.to_owned(), entry.path()));
        } else {
            found.unnamed.push(file.into_owned());
        }
    }
    found.entries_cut = entries.peek().is_some();
    // By name, and for one name `NAME.sock` first: it is kept, the bare `NAME` left out (and
    // said).
    found
        .pools
        .sort_unstable_by(|a, b| (&a.0, !ends_in_sock(&a.1)).cmp(&(&b.0, !ends_in_sock(&b.1))));
    let mut kept: Vec<(String, PathBuf)> = Vec::with_capacity(found.pools.len());
    for (name, path) in std::mem::take(&mut found.pools) {
        match kept.last() {
            Some((last, _)) if *last == name => found.shadowed.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            ),
            _ => kept.push((name, path)),
        }
    }
    found.pools = kept;
    let paired = pair_lanes(std::mem::take(&mut found.pools));
    (found.pools, found.lanes, found.lanes_alone) = (paired.pools, paired.lanes, paired.alone);
    if found.pools.len() > MAX_POOLS {
        found.over_cap = found
            .pools
            .split_off(MAX_POOLS)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
    }
    found.unnamed.sort_unstable();
    found.shadowed.sort_unstable();
    Ok(found)
}

/// The suffix of a status lane's name: `NAME.status` is the lane of `NAME`.
const LANE_SUFFIX: &str = ".status";

/// What [`pair_lanes`] made of a listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Paired {
    /// The pools, in the listing's order.
    pub pools: Vec<(String, PathBuf)>,
    /// `(pool name, lane path)`, in pool name order.
    pub lanes: Vec<(String, PathBuf)>,
    /// The names of lanes whose pool is not listed (`NAME.status` without `NAME`).
    pub alone: Vec<String>,
}

/// Pairs the status lanes of a listing (`(name, path)`, sorted by name): `NAME.status` is the
/// lane of the pool `NAME` when `NAME` is listed too (and is no lane itself), and is then not a
/// pool of its own; without it, it is left out (in `alone`). Every other name is a pool.
pub fn pair_lanes(listed: Vec<(String, PathBuf)>) -> Paired {
    let mut paired = Paired::default();
    let is_pool = |name: &str| {
        !name.ends_with(LANE_SUFFIX)
            && listed
                .binary_search_by(|(known, _)| known.as_str().cmp(name))
                .is_ok()
    };
    for (name, path) in &listed {
        match name
            .strip_suffix(LANE_SUFFIX)
            .filter(|pool| !pool.is_empty())
        {
            Some(pool) if is_pool(pool) => paired.lanes.push((pool.to_owned(), path.clone())),
            Some(_) => paired.alone.push(name.clone()),
            None => paired.pools.push((name.clone(), path.clone())),
        }
    }
    paired.lanes.sort_unstable();
    paired
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn pairs_name_status_with_name_as_its_lane() {
        let listed = |names: &[&str]| {
            let mut listed: Vec<(String, PathBuf)> = names
                .iter()
                .map(|n| ((*n).to_owned(), PathBuf::from(format!("/run/php/{n}.sock"))))
                .collect();
            listed.sort_unstable();
            listed
        };
        let paired = pair_lanes(listed(&[
            "www",
            "www.status",
            "api.status",
            "a.b",
            "a.b.status",
            "a",
            "x.status.status",
            "x.status",
        ]));
        let names = |list: &[(String, PathBuf)]| -> Vec<String> {
            list.iter().map(|(n, _)| n.clone()).collect()
        };
        assert_eq!(names(&paired.pools), ["a", "a.b", "www"]);
        assert_eq!(names(&paired.lanes), ["a.b", "www"]);
        assert_eq!(paired.lanes[1].1, PathBuf::from("/run/php/www.status.sock"));
        // A lane without its pool is left out; a lane is never a lane's pool.
        assert_eq!(paired.alone, ["api.status", "x.status", "x.status.status"]);
        assert_eq!(pair_lanes(Vec::new()), Paired::default());
    }

    #[test]
    fn lists_sockets_by_name_and_skips_the_rest() {
        let dir = std::env::temp_dir().join(format!("fch-discover-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let _www = UnixListener::bind(dir.join("www.sock")).unwrap();
        let _lane = UnixListener::bind(dir.join("www.status.sock")).unwrap();
        let _alone = UnixListener::bind(dir.join("gone.status.sock")).unwrap();
        let _api = UnixListener::bind(dir.join("api")).unwrap();
        let _bad = UnixListener::bind(dir.join("bad name.sock")).unwrap();
        fs::write(dir.join("plain.sock"), b"not a socket").unwrap();
        let found = sockets(&dir).unwrap();
        let names: Vec<&str> = found.pools.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["api", "www"]);
        assert_eq!(found.pools[1].1, dir.join("www.sock"));
        assert_eq!(found.unnamed, ["bad name.sock"]);
        assert_eq!(
            found.lane("www"),
            Some(dir.join("www.status.sock").as_path())
        );
        assert_eq!(found.lane("api"), None);
        assert_eq!(found.lanes_alone, ["gone.status"]);
        assert!(
            found
                .left_out()
                .is_some_and(|text| text.contains("(gone.status)")),
            "{:?}",
            found.left_out()
        );
        assert!(found.over_cap.is_empty());
        assert!(found.shadowed.is_empty());
        fs::remove_dir_all(&dir).unwrap();
        let missing = sockets(&dir).unwrap_err();
        assert!(
            missing.missing && missing.message.contains("POOLS=dir:"),
            "{missing:?}"
        );
    }

    /// Every kind left out, in one line, ten names each at most.
    #[test]
    fn left_out_names_every_kind() {
        assert_eq!(Found::default().left_out(), None);
        let names = |n: usize, stem: &str| (0..n).map(|i| format!("{stem}{i}")).collect();
        let found = Found {
            over_cap: names(12, "p"),
            unnamed: names(1, "bad "),
            shadowed: names(1, "www"),
            lanes_alone: names(1, "x.status"),
            entries_cut: true,
            ..Found::default()
        };
        assert_eq!(
            found.left_out().unwrap(),
            format!(
                "12 socket(s) past the cap of {MAX_POOLS} pools (p0, p1, p2, p3, p4, p5, p6, p7, \
                 p8, p9 and 2 more); 1 socket(s) whose name is not a pool name (bad 0); 1 \
                 socket(s) whose pool name a NAME.sock beside them takes (www0); 1 status lane \
                 socket(s) without their pool's socket NAME.sock (x.status0); every entry past \
                 the first {MAX_ENTRIES} of the directory (not looked at)"
            )
        );
    }

    /// `www` and `www.sock` both name the pool `www`: `www.sock` is kept (whichever order the
    /// directory lists them in), and `www` is left out in the log's words, not silently.
    #[test]
    fn name_dot_sock_wins_over_a_bare_name_and_the_other_is_said() {
        let dir = std::env::temp_dir().join(format!("fch-discover-twins-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let _bare = UnixListener::bind(dir.join("www")).unwrap();
        let _sock = UnixListener::bind(dir.join("www.sock")).unwrap();
        let _api = UnixListener::bind(dir.join("api.sock")).unwrap();
        let _zz = UnixListener::bind(dir.join("zz")).unwrap();
        let found = sockets(&dir).unwrap();
        assert_eq!(
            found.pools,
            [
                ("api".to_owned(), dir.join("api.sock")),
                ("www".to_owned(), dir.join("www.sock")),
                ("zz".to_owned(), dir.join("zz")),
            ]
        );
        assert_eq!(found.shadowed, ["www"]);
        let said = found.left_out().unwrap();
        assert!(
            said.contains("1 socket(s) whose pool name a NAME.sock beside them takes (www)"),
            "{said}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
