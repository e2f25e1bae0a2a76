//! Who may open a file, in words: a file's owner, group and mode, and who this process is (its
//! uid, gid and groups), each id with its name from `/etc/passwd` or `/etc/group` when it has
//! one. For the message of a connect that failed with `EACCES`; read only then.
//!
//! Invariants: [`name_in`] is pure and total over any text; each database read is bounded
//! ([`MAX_DB_BYTES`]); an unreadable database leaves the ids without names.

use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The most read of `/etc/passwd` or `/etc/group` (a name past it is not found, not an error).
const MAX_DB_BYTES: u64 = 1 << 20;

/// The most supplementary groups listed (the kernel allows 65,536).
const MAX_GROUPS_SHOWN: usize = 16;

/// The name of `id` in a `name:password:id:...` database (`/etc/passwd`, `/etc/group`).
pub(crate) fn name_in(db: &str, id: u32) -> Option<&str> {
    db.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next().filter(|name| !name.is_empty())?;
        let found = fields.nth(1)?.parse::<u32>().ok()?;
        (found == id).then_some(name)
    })
}

/// The user and group databases, read once for one message.
pub(crate) struct Names {
    passwd: String,
    group: String,
}

impl Names {
    /// Reads `/etc/passwd` and `/etc/group` (each empty when unreadable).
    pub(crate) fn load() -> Self {
        Self {
            passwd: read_db(Path::new("/etc/passwd")),
            group: read_db(Path::new("/etc/group")),
        }
    }

    /// `name (id)`, or `id` alone without a name.
    fn named(db: &str, id: u32) -> String {
        match name_in(db, id) {
            Some(name) => format!("{name} ({id})"),
            None => id.to_string(),
        }
    }

    /// The user `uid`, as `name (uid)`.
    pub(crate) fn user(&self, uid: u32) -> String {
        Self::named(&self.passwd, uid)
    }

    /// The group `gid`, as `name (gid)`.
    pub(crate) fn group(&self, gid: u32) -> String {
        Self::named(&self.group, gid)
    }

    /// The bare name of group `gid` (for advice), or its number.
    pub(crate) fn group_name(&self, gid: u32) -> String {
        name_in(&self.group, gid).map_or_else(|| gid.to_string(), str::to_owned)
    }

    /// The bare name of user `uid` (for advice), or its number.
    pub(crate) fn user_name(&self, uid: u32) -> String {
        name_in(&self.passwd, uid).map_or_else(|| uid.to_string(), str::to_owned)
    }

    /// `owner root (0), group www-data (33), mode 0660`: a file's, from its metadata.
    pub(crate) fn file(&self, meta: &std::fs::Metadata) -> String {
        format!(
            "owner {}, group {}, mode {:04o}",
            self.user(meta.uid()),
            self.group(meta.gid()),
            meta.mode() & 0o7777
        )
    }

    /// This process: `user nobody (65534) with groups nogroup (65534), www-data (33)` (its
    /// effective ids, which the kernel checks).
    pub(crate) fn process(&self) -> String {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let mut groups = vec![gid];
        for extra in rustix::process::getgroups().unwrap_or_default() {
            if !groups.contains(&extra.as_raw()) {
                groups.push(extra.as_raw());
            }
        }
        let mut text = format!("user {} with groups ", self.user(uid));
        for (i, gid) in groups.iter().take(MAX_GROUPS_SHOWN).enumerate() {
            let comma = if i == 0 { "" } else { ", " };
            let _ = write!(text, "{comma}{}", self.group(*gid));
        }
        if groups.len() > MAX_GROUPS_SHOWN {
            text.push_str(", ...");
        }
        text
    }
}

/// The start of a database file, at most [`MAX_DB_BYTES`]; empty when it cannot be read.
fn read_db(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(file) = std::fs::File::open(path) {
        let mut bytes = Vec::new();
        if file.take(MAX_DB_BYTES).read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_by_id_from_passwd_and_group_lines() {
        let db = "root:x:0:0:root:/root:/bin/bash\n\
                  broken\n\
                  :x:7:\n\
                  www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
                  odd:x:notanumber:\n\
                  nogroup:x:65534:\n";
        assert_eq!(name_in(db, 0), Some("root"));
        assert_eq!(name_in(db, 33), Some("www-data"));
        assert_eq!(name_in(db, 65534), Some("nogroup"));
        assert_eq!(name_in(db, 7), None, "a line without a name names nothing");
        assert_eq!(name_in(db, 1), None);
        assert_eq!(name_in("", 0), None);
        assert_eq!(name_in("a:b", 0), None);
        let names = Names {
            passwd: db.to_owned(),
            group: String::new(),
        };
        assert_eq!(names.user(33), "www-data (33)");
        assert_eq!(names.group(33), "33");
        assert_eq!(names.group_name(33), "33");
        assert_eq!(names.user_name(0), "root");
    }
}
