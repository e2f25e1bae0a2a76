//! `POOLS=dir:/path`: the Unix sockets in a directory, as named pools.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::config::{pool_name_ok, MAX_POOLS};

/// The sockets found in a directory, and what was left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// `(name, socket path)`, in name order, at most [`MAX_POOLS`].
    pub pools: Vec<(String, PathBuf)>,
    /// Sockets whose file name is not a pool name (listed for the log).
    pub unnamed: Vec<String>,
    /// Sockets past [`MAX_POOLS`] (their names, for the log).
    pub over_cap: Vec<String>,
    /// Whether the directory has more than [`MAX_ENTRIES`] entries: only those were looked at.
    pub entries_cut: bool,
}

impl Found {
    /// What was left out, for the log (`None`: nothing): at most ten names of each kind.
    pub fn left_out(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.over_cap.is_empty() {
            parts.push(format!(
                "{} socket(s) past the cap of {MAX_POOLS} pools ({})",
                self.over_cap.len(),
                first_ten(&self.over_cap)
            ));
        }
        if !self.unnamed.is_empty() {
            parts.push(format!(
                "{} socket(s) whose name is not a pool name ({})",
                self.unnamed.len(),
                first_ten(&self.unnamed)
            ));
        }
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

/// The Unix sockets in `dir`, each named after its file less `.sock`.
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
    found.pools.sort();
    found.pools.dedup_by(|a, b| a.0 == b.0);
    if found.pools.len() > MAX_POOLS {
        found.over_cap = found
            .pools
            .split_off(MAX_POOLS)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
    }
    found.unnamed.sort();
    Ok(found)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn lists_sockets_by_name_and_skips_the_rest() {
        let dir = std::env::temp_dir().join(format!("fch-discover-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let _www = UnixListener::bind(dir.join("www.sock")).unwrap();
        let _api = UnixListener::bind(dir.join("api")).unwrap();
        let _bad = UnixListener::bind(dir.join("bad name.sock")).unwrap();
        fs::write(dir.join("plain.sock"), b"not a socket").unwrap();
        let found = sockets(&dir).unwrap();
        let names: Vec<&str> = found.pools.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["api", "www"]);
        assert_eq!(found.pools[1].1, dir.join("www.sock"));
        assert_eq!(found.unnamed, ["bad name.sock"]);
        assert!(found.over_cap.is_empty());
        fs::remove_dir_all(&dir).unwrap();
        let missing = sockets(&dir).unwrap_err();
        assert!(
            missing.missing && missing.message.contains("POOLS=dir:"),
            "{missing:?}"
        );
    }
}
