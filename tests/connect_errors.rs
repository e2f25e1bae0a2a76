//! A connect that fails says why in the words of its cause, in `check` and the server alike (one
//! target, `src/probe/target.rs`): a socket we may not open names its owner, group and mode and
//! who we are; a path that is not a socket says so; a relative socket path, read as a host name,
//! says how to give a path; and `localhost` that is both 127.0.0.1 and ::1, with IPv6 off, is
//! refused (nothing listens), not unavailable. Against Debian's php-fpm where one is involved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use common::sys::{which, Ipv6OffNamespace};
use common::tool::{self, run_program_to_exit, Finished};
use common::{run_to_exit, PhpFpm, TempDir};

/// `check` through `wrapper` (a command that runs its arguments), with `env`.
fn check_under(wrapper: &[&str], binary: &str, env: &[(&str, &str)]) -> Finished {
    let mut argv = wrapper.to_vec();
    argv.extend(tool::runner());
    argv.push(binary);
    run_program_to_exit(&argv, env, &["check"])
}

/// Debian's socket is www-data:www-data 0660: as a user outside the group, `check` names the
/// socket's owner, group and mode, our uid and groups, and what to do. Run as nobody
/// (`setpriv`: root skips the permission check) against a real php-fpm's root:www-data 0660
/// socket; in the group, the same check passes.
#[test]
fn a_socket_of_another_group_names_owner_group_mode_and_what_to_do() {
    let setpriv = which("setpriv");
    let fpm =
        PhpFpm::unix_with("listen.owner = root\nlisten.group = www-data\nlisten.mode = 0660\n");
    let socket = fpm.socket_path().display().to_string();
    // A copy of the binary that nobody may run, wherever the build directory is.
    let dir = TempDir::new();
    let binary = tool::install_as(dir.path(), "fastcgi-healthcheck");
    let binary = binary.to_str().unwrap();
    let env = [("DESTINATION", socket.as_str())];
    let nobody = [&setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"];
    let finished = check_under(&nobody, binary, &env);
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert_eq!(
        finished.stderr,
        format!(
            "connect_failed: cannot connect to unix:{socket}: Permission denied (os error 13); \
             the socket has owner root (0), group www-data (33), mode 0660, and this process \
             runs as user nobody (65534) with groups nogroup (65534); run it as a member of \
             group www-data (usermod -aG www-data nobody), or set listen.owner, listen.group \
             and listen.mode in the php-fpm pool to let it in"
        )
    );
    let member = [&setpriv, "--reuid=65534", "--regid=65534", "--groups=33"];
    let finished = check_under(&member, binary, &env);
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    // A directory on the way that we may not enter is named instead.
    let closed = TempDir::new();
    std::fs::set_permissions(
        closed.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let inside = closed.join("php-fpm.sock").display().to_string();
    let finished = check_under(&nobody, binary, &[("DESTINATION", &inside)]);
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.ends_with(&format!(
            "Permission denied (os error 13); the directory {} (owner root (0), group root (0), \
             mode 0700) is closed to this process, user nobody (65534) with groups nogroup \
             (65534); run it as a user who may enter that directory, or open the directory to it",
            closed.path().display()
        )),
        "{}",
        finished.stderr
    );
}

/// A regular file or a directory as DESTINATION: the kernel refuses the connect, and we say it
/// is not a socket (not "is php-fpm running").
#[test]
fn a_file_or_a_directory_is_not_a_socket() {
    let dir = TempDir::new();
    std::fs::write(dir.join("www.conf"), "[www]\n").unwrap();
    for (name, kind) in [("www.conf", "a regular file"), ("", "a directory")] {
        let path = dir.join(name).display().to_string();
        let finished = run_to_exit(&[("DESTINATION", &path)], &["check"]);
        assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
        assert_eq!(
            finished.stderr,
            format!(
                "connect_failed: unix:{path} is {kind}, not a socket; give the path of php-fpm's \
                 socket (the pool's listen)"
            )
        );
    }
}

/// `DESTINATION=www.sock` is a valid host name, and read as one; its failure says how a Unix
/// socket is given. In a network namespace of its own (`unshare -n`), the name fails at once.
#[test]
fn a_relative_socket_path_is_a_host_name_and_says_how_to_give_a_path() {
    let unshare = which("unshare");
    let finished = check_under(
        &[&unshare, "-n"],
        tool::bin(),
        &[("DESTINATION", "www.sock")],
    );
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .starts_with("resolve_failed: cannot resolve www.sock:9000: "),
        "{}",
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .ends_with("; a Unix socket is given by its absolute path"),
        "{}",
        finished.stderr
    );
}

/// Where /etc/hosts maps localhost to 127.0.0.1 and ::1 and IPv6 is off, ::1 fails with
/// EADDRNOTAVAIL and 127.0.0.1 is refused: the verdict is the refusal (nothing listens), not
/// `connect_failed`, whichever address the resolver gave first.
#[test]
fn localhost_is_refused_where_ipv6_is_off() {
    let namespace = Ipv6OffNamespace::new();
    let finished = check_under(
        &namespace.wrapper(),
        tool::bin(),
        &[("DESTINATION", "localhost"), ("DESTINATION_PORT", "9001")],
    );
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert_eq!(
        finished.stderr,
        "connect_refused: localhost:9001 refused the connection; is php-fpm running and \
         listening there?"
    );
}
