//! Configuration: `config::parse` with arguments and environment built from the input, and the
//! value parsers `config::parse_duration`, `config::parse_host`, `config::parse_log_spec`.
//!
//! Input layout: a header byte (bit 0: `check` mode), then pieces separated by 0x00. Every piece
//! is a tag byte and a value: tag % 4 == 0 sets the environment variable
//! VARS[tag / 4 % 15]; 1 adds FLAGS[tag / 4 % FLAGS.len()] and the value as two arguments; 2 adds
//! `FLAG=value`; 3 adds the value as one argument. Values are raw bytes (possibly not UTF-8).
#![no_main]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use fastcgi_healthcheck::config::{self, Command, Config, Host};
use libfuzzer_sys::fuzz_target;

const VARS: [&str; 15] = [
    "SERVER",
    "DESTINATION",
    "DESTINATION_PORT",
    "PING_PATH",
    "PING_RESPONSE",
    "TIMEOUT",
    "FAIL_STATUS",
    "CLIENT_TIMEOUT",
    "MAX_CONNECTIONS",
    "COALESCE",
    "CACHE_TTL",
    "IDLE_EXIT",
    "STATUS_PATH",
    "RUST_LOG",
    "STATUS_LISTEN",
];

const FLAGS: [&str; 28] = [
    "--server",
    "--destination",
    "--destination-port",
    "--ping-path",
    "--ping-response",
    "--timeout",
    "--fail-status",
    "--client-timeout",
    "--max-connections",
    "--coalesce",
    "--cache-ttl",
    "--idle-exit",
    "--status-path",
    "--log-level",
    "--status",
    "-v",
    "--max-listen-queue",
    "--min-idle-processes",
    "--accepted-conn",
    "--listen-queue",
    "--max-slow-requests",
    "--min-",
    "--max-bogus",
    "--verbose",
    "check",
    "--help",
    "--live",
    "--status-listen",
];

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

fn in_range(d: Duration) -> bool {
    (MS..=HOUR).contains(&d)
}

fn check_config(config: &Config) {
    assert!(in_range(config.timeout), "timeout {:?}", config.timeout);
    assert!(in_range(config.client_timeout), "client timeout {:?}", config.client_timeout);
    assert!(config.cache_ttl.is_zero() || in_range(config.cache_ttl));
    assert!(config.idle_exit.is_none_or(in_range));
    assert!((400..=599).contains(&config.fail_status));
    assert!(config.max_connections >= 1);
    assert!(config.ping_path.starts_with('/'));
    assert!(!config.ping_path.chars().any(|c| c.is_whitespace() || c.is_control()));
    if let Some(path) = &config.status_path {
        assert!(path.starts_with('/'));
    }
    match &config.status_listen {
        Some(config::Destination::Unix(path)) => {
            assert!(path.is_absolute() && path.as_os_str().len() <= 107, "{path:?}");
        }
        Some(config::Destination::Tcp { port, .. }) => assert_ne!(*port, 0),
        None => {}
    }
}

fn check_error(message: &str, env: &[(&str, OsString)]) {
    assert!(!message.is_empty());
    assert!(
        !message.contains(['\n', '\r']),
        "config error on more than one line: {message:?}"
    );
    let names_var = VARS
        .iter()
        .find(|v| message.starts_with(&format!("{v}=")));
    if let Some(var) = names_var {
        // Defaults are valid: a variable named in an error was set.
        assert!(env.iter().any(|(k, _)| k == var), "error names unset {var}: {message}");
        return;
    }
    assert!(
        // `--flag=...`, or `-v is ignored by check --live: ...`.
        message.starts_with('-')
            || message.starts_with("argument ")
            || message.starts_with("unknown argument "),
        "error names no variable, flag or argument: {message:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&header, data)) = data.split_first() else {
        return;
    };
    let check = header & 1 == 1;
    let mut args: Vec<OsString> = Vec::new();
    if check {
        args.push("check".into());
    }
    let mut env: Vec<(&str, OsString)> = Vec::new();
    for piece in data.split(|&b| b == 0) {
        let Some((&tag, value)) = piece.split_first() else {
            continue;
        };
        let value_os = OsStr::from_bytes(value).to_os_string();
        let index = usize::from(tag / 4);
        match tag % 4 {
            0 => {
                let var = VARS[index % VARS.len()];
                env.retain(|(k, _)| *k != var);
                env.push((var, value_os));
            }
            1 => {
                args.push(FLAGS[index % FLAGS.len()].into());
                args.push(value_os);
            }
            2 => {
                let mut arg = OsString::from(FLAGS[index % FLAGS.len()]);
                arg.push("=");
                arg.push(&value_os);
                args.push(arg);
            }
            _ => args.push(value_os),
        }
    }

    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    match config::parse(&args, lookup) {
        Ok(Command::Serve(config)) => {
            assert!(!check);
            check_config(&config);
        }
        Ok(Command::Check { config, status, .. }) => {
            assert!(check);
            check_config(&config);
            for t in status.iter().flatten() {
                assert!(fastcgi_healthcheck::status::NUMERIC_FIELDS.contains(&t.field));
            }
        }
        Ok(Command::Help | Command::Version) => {}
        Err(e) => check_error(&e.to_string(), &env),
    }

    // The value parsers on every piece, as text.
    for piece in data.split(|&b| b == 0) {
        let text = String::from_utf8_lossy(piece);
        if let Some(d) = config::parse_duration(&text) {
            assert!(in_range(d), "parse_duration({text:?}) = {d:?}");
        }
        match config::parse_host(&text) {
            Some(Host::Name(name)) => {
                assert_eq!(name, text);
                assert!(!name.is_empty() && name.len() <= 254);
                assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            }
            Some(Host::Ip(_)) | None => {}
        }
        if let Some(spec) = config::parse_log_spec(&text) {
            for (module, _) in &spec.modules {
                assert!(!module.is_empty() && !module.contains('-'));
            }
        }
    }
});
