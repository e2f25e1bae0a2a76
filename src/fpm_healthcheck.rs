//! The `php-fpm-healthcheck` mode: the interface of renatomefi's php-fpm-healthcheck (v0.5.0),
//! from our binary, with a deadline.
//!
//! It runs when the program's base name is `php-fpm-healthcheck`, or as
//! `fastcgi-healthcheck php-fpm-healthcheck ARGS...`. Its options, variables, output lines and
//! exit codes are the original's, so that `COPY fastcgi-healthcheck /usr/local/bin/php-fpm-healthcheck`
//! keeps every existing probe working:
//!
//! - `-v`/`--verbose`, and `--<field>=N` or `--<field> N` for `FIELDS`; each fails when the
//!   status page's value is greater than N; checks run in command-line order, the first failure
//!   ends the run. As the original's GNU `getopt` reads them, a unique prefix of a long option
//!   stands for it (`--accepted 5`), and arguments that are not options are ignored.
//! - `FCGI_CONNECT` (`localhost:9000`; with a colon host:port, else a Unix socket path) and
//!   `FCGI_STATUS_PATH` (`/status`), sent literally as `SCRIPT_NAME` and `SCRIPT_FILENAME` of one
//!   `GET`; nothing else from the caller's environment is sent.
//! - Exit codes: 0 healthy, 1 a check failed, 3 invalid options, 8 no status page, the errno of
//!   a failed connect (111 refused, 2 no such socket file, 13 permission denied), 232 unknown
//!   host (as `cgi-fcgi`), 124 timeout.
//! - Exit 8 by the script's own rule: only when its answer from the fifth line on (`tail +5` of
//!   `cgi-fcgi`'s output: the CGI headers, a blank line, the body) is exactly `File not found.`.
//!   php-fpm's 404 has two header lines without `X-Powered-By` (Debian's `expose_php = Off`), so
//!   the script passes on it there; any other answer (a 403 `Access denied.`...) passes too.
//!   We pass where the script passes, and say on stderr what is wrong with the answer.
//! - A host name resolves as `cgi-fcgi` resolves it: its first IPv4 address, one connect.
//!
//! Beyond the original: a deadline (`--timeout=N`, whole seconds as the upstream branch that
//! adds it, or a duration such as `500ms`; 30 s by default, Docker's `HEALTHCHECK` timeout), one
//! line saying what failed on a connect failure, and a field missing from the page fails (the
//! original passes silently). Nothing else from the environment is read: an application's own
//! `TIMEOUT` is not ours.
//!
//! Everything but [`main`] is pure: `parse_args` and `settings` read the command line and the
//! environment, `outcome` turns the probe's answer into the output and the exit code.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, Destination, Host};
use crate::limits::MAX_CONFIG_TEXT;
use crate::probe::{Failure, Probe, Reason, Verdict};
use crate::proto::cgi;
use crate::proto::fcgi::Answer;
use crate::proto::status;

/// The program name that selects this mode (and the first argument that does).
pub const NAME: &str = "php-fpm-healthcheck";

/// The check options, as on the command line; dashes become spaces to name the status field.
pub(crate) const FIELDS: [&str; 10] = [
    "accepted-conn",
    "listen-queue",
    "max-listen-queue",
    "listen-queue-len",
    "idle-processes",
    "active-processes",
    "total-processes",
    "max-active-processes",
    "max-children-reached",
    "slow-requests",
];

/// Exit status: healthy.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit status: a check failed (or its field is missing from the page).
pub(crate) const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status: the host of `FCGI_CONNECT` does not resolve (`cgi-fcgi` prints `Unknown host`
/// and exits 1000, which the shell sees as 1000 mod 256).
pub(crate) const EXIT_UNKNOWN_HOST: u8 = 232;
/// Exit status: invalid options or settings.
pub(crate) const EXIT_INVALID: u8 = 3;
/// Exit status: the status page is missing or unusable.
pub(crate) const EXIT_NO_PAGE: u8 = 8;
/// Exit status: the deadline passed (coreutils' `timeout`).
pub(crate) const EXIT_TIMEOUT: u8 = 124;

/// The deadline without `--timeout`: Docker's `HEALTHCHECK` default (the script has none of its
/// own, so under Docker a slow pool passes until Docker's 30 s).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `--timeout`, in seconds.
const MAX_TIMEOUT_SECS: u64 = 3600;
/// The answer, from its fifth line on, that the script takes for a missing status page.
const NOT_FOUND: &[u8] = b"File not found.";

const DEFAULT_CONNECT: &str = "localhost:9000";
const DEFAULT_STATUS_PATH: &str = "/status";
/// The longest Unix socket path (`sun_path` holds 108 bytes with the final NUL).
const MAX_UNIX_PATH: usize = 107;

/// One check: fails when the page's `field` is greater than `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Check {
    /// The field as on the status page (`max listen queue`).
    pub(crate) field: String,
    /// The largest value that passes.
    pub(crate) limit: i64,
}

/// The command line, read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Options {
    /// `-v`/`--verbose`.
    pub(crate) verbose: bool,
    /// The checks, in command-line order.
    pub(crate) checks: Vec<Check>,
    /// `--timeout`, if given.
    pub(crate) timeout: Option<Duration>,
}

/// A command line or setting that cannot be used: the lines for stderr; exit 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid(pub(crate) String);

/// Reads the command line (without the program name), as the original's `getopt` call and its
/// integer check: syntax errors first (all of them, then `Invalid options, terminating.`), then
/// the values in order.
pub(crate) fn parse_args(args: &[OsString]) -> Result<Options, Invalid> {
    let mut syntax_errors = String::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut verbose = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (long, None),
            };
            let name = match long_option(name) {
                Ok(name) => name,
                Err(LongError::Unrecognized) => {
                    syntax_errors.push_str(&format!("{NAME}: unrecognized option '{text}'\n"));
                    continue;
                }
                Err(LongError::Ambiguous(candidates)) => {
                    let list: Vec<String> = candidates.iter().map(|c| format!("'--{c}'")).collect();
                    syntax_errors.push_str(&format!(
                        "{NAME}: option '{text}' is ambiguous; possibilities: {}\n",
                        list.join(" ")
                    ));
                    continue;
                }
            };
            if name == "verbose" {
                match inline {
                    None => verbose = true,
                    Some(_) => syntax_errors.push_str(&format!(
                        "{NAME}: option '--verbose' doesn't allow an argument\n"
                    )),
                }
            } else {
                let value = match inline {
                    Some(value) => Some(value.to_owned()),
                    None => rest.next().map(|v| v.to_string_lossy().into_owned()),
                };
                match value {
                    Some(value) => pairs.push((format!("--{name}"), value)),
                    None => syntax_errors
                        .push_str(&format!("{NAME}: option '--{name}' requires an argument\n")),
                }
            }
        } else if let Some(shorts) = text.strip_prefix('-').filter(|s| !s.is_empty()) {
            for c in shorts.chars() {
                if c == 'v' {
                    verbose = true;
                } else {
                    syntax_errors.push_str(&format!(
                        "{NAME}: invalid option -- '{}'\n",
                        c.escape_debug()
                    ));
                }
            }
        }
        // Anything else is not an option: the original's getopt moves it after `--`, where the
        // script ignores it.
    }
    if !syntax_errors.is_empty() {
        syntax_errors.push_str("Invalid options, terminating.\n");
        return Err(Invalid(syntax_errors));
    }
    let mut options = Options {
        verbose,
        ..Options::default()
    };
    for (option, value) in pairs {
        if option == "--timeout" {
            options.timeout = Some(parse_timeout(&value)?);
            continue;
        }
        let limit = parse_integer(&value).ok_or_else(|| {
            Invalid(format!(
                "'{option}' option value must be an integer, '{value}' given\n"
            ))
        })?;
        let field = option.trim_start_matches('-').replace('-', " ");
        options.checks.push(Check { field, limit });
    }
    Ok(options)
}

/// `--timeout`: whole seconds, as the upstream branch that adds it (`--timeout=N`, with its
/// message for a value that is not an integer), 1 to [`MAX_TIMEOUT_SECS`]; beyond it, a duration
/// (`500ms`, `1.5s`).
fn parse_timeout(value: &str) -> Result<Duration, Invalid> {
    if let Some(seconds) = parse_integer(value) {
        return u64::try_from(seconds)
            .ok()
            .filter(|seconds| (1..=MAX_TIMEOUT_SECS).contains(seconds))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                Invalid(format!(
                    "'--timeout' option value must be between 1 and {MAX_TIMEOUT_SECS} seconds, \
                     '{value}' given\n"
                ))
            });
    }
    config::parse_duration(value).ok_or_else(|| {
        Invalid(format!(
            "'--timeout' option value must be an integer, '{value}' given (seconds, 1 to \
             {MAX_TIMEOUT_SECS}; or a duration: 500ms, 1.5s)\n"
        ))
    })
}

/// Why a `--name` is not an option.
enum LongError {
    Unrecognized,
    Ambiguous(Vec<&'static str>),
}

/// The long option `name` stands for, as GNU `getopt` reads the original's option list: the exact
/// name, or the one option it is a prefix of (`--accepted` is `--accepted-conn`). `--timeout`,
/// ours, only by its whole name, so that the original's abbreviations keep their meaning.
fn long_option(name: &str) -> Result<&'static str, LongError> {
    if name == "timeout" {
        return Ok("timeout");
    }
    let options = std::iter::once("verbose").chain(FIELDS);
    if let Some(exact) = options.clone().find(|option| *option == name) {
        return Ok(exact);
    }
    let candidates: Vec<&'static str> = options.filter(|option| option.starts_with(name)).collect();
    match candidates.as_slice() {
        [] => Err(LongError::Unrecognized),
        [one] => Ok(one),
        _ => Err(LongError::Ambiguous(candidates)),
    }
}

/// An integer as `test N -eq N` reads one: an optional sign, then digits (blanks around them
/// are dropped, as the original's shell drops them).
fn parse_integer(text: &str) -> Option<i64> {
    let text = text.trim_ascii();
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Where and what to ask, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `FCGI_CONNECT` as given (or its default), for the verbose line.
    pub(crate) connect: String,
    /// Where it points.
    pub(crate) destination: Destination,
    /// `FCGI_STATUS_PATH`.
    pub(crate) path: String,
    /// The deadline: `--timeout`, else [`DEFAULT_TIMEOUT`].
    pub(crate) timeout: Duration,
}

/// Reads `FCGI_CONNECT` and `FCGI_STATUS_PATH` (an empty one is unset, as the original's
/// `${VAR:-default}`), and nothing else: a variable such as `TIMEOUT` belongs to the
/// application's container. `timeout` is `--timeout`.
pub(crate) fn settings<E>(env: E, timeout: Option<Duration>) -> Result<Settings, Invalid>
where
    E: Fn(&str) -> Option<OsString>,
{
    let read = |name: &str, default: &str| -> Result<String, Invalid> {
        match env(name) {
            None => Ok(default.to_owned()),
            Some(value) if value.is_empty() => Ok(default.to_owned()),
            Some(value) => value.into_string().map_err(|value| {
                Invalid(format!(
                    "{NAME}: {name}={value:?} is not valid UTF-8; set it to text\n"
                ))
            }),
        }
    };
    let connect = read("FCGI_CONNECT", DEFAULT_CONNECT)?;
    let path = read("FCGI_STATUS_PATH", DEFAULT_STATUS_PATH)?;
    if path.len() > MAX_CONFIG_TEXT {
        return Err(Invalid(format!(
            "{NAME}: FCGI_STATUS_PATH is longer than {MAX_CONFIG_TEXT} bytes; set it to php-fpm's \
             pm.status_path (e.g. /status)\n"
        )));
    }
    Ok(Settings {
        destination: destination(&connect)?,
        connect,
        path,
        timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
    })
}

/// `FCGI_CONNECT` as `cgi-fcgi -connect` reads it: with a colon, host:port (an empty host is
/// `localhost`); without one, a Unix socket path (relative paths too: `abc` is a path).
pub(crate) fn destination(connect: &str) -> Result<Destination, Invalid> {
    let Some((host, port)) = connect.rsplit_once(':') else {
        if connect.len() > MAX_UNIX_PATH {
            return Err(Invalid(format!(
                "{NAME}: FCGI_CONNECT={connect:?} is longer than the {MAX_UNIX_PATH} bytes a Unix \
                 socket path may have\n"
            )));
        }
        return Ok(Destination::Unix(PathBuf::from(connect)));
    };
    let port = port.parse::<u16>().ok().filter(|port| *port > 0);
    let host = if host.is_empty() {
        Some(Host::Name("localhost".to_owned()))
    } else {
        config::parse_host(host)
    };
    match (host, port) {
        (Some(host), Some(port)) => Ok(Destination::Tcp { host, port }),
        _ => Err(Invalid(format!(
            "{NAME}: FCGI_CONNECT={connect:?} is not host:port (a host name or IP address, and a \
             port 1-65535, e.g. 127.0.0.1:9000) nor a Unix socket path (without a colon)\n"
        ))),
    }
}

/// What the run prints, and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// For stdout (`-v`).
    pub(crate) stdout: String,
    /// For stderr.
    pub(crate) stderr: String,
    /// The exit status.
    pub(crate) code: u8,
}

/// The verbose line printed before the request.
pub(crate) fn announce(settings: &Settings) -> String {
    format!(
        "Trying to connect to php-fpm via: {}{}\n",
        settings.connect, settings.path
    )
}

/// Turns the probe's verdict and answer into the output and the exit status.
pub(crate) fn outcome(
    options: &Options,
    settings: &Settings,
    verdict: Verdict,
    answer: Option<&Answer>,
) -> Outcome {
    let mut out = Outcome {
        stdout: String::new(),
        stderr: String::new(),
        code: EXIT_OK,
    };
    let Some(answer) = answer else {
        let failure = verdict.err().unwrap_or_else(|| {
            Failure::new(Reason::ClosedEarly, "no complete FastCGI answer".to_owned())
        });
        return without_answer(out, &failure);
    };
    let body = cgi::split(&answer.stdout).map_or(answer.stdout.as_slice(), |(_, body)| body);
    if options.verbose {
        out.stdout.push_str("php-fpm status output:\n");
        out.stdout.push_str(&printable(body));
        out.stdout.push('\n');
    }
    if from_fifth_line(&answer.stdout) == NOT_FOUND {
        out.stderr.push_str("php-fpm status page non reachable\n");
        if options.verbose {
            out.stderr.push_str(&format!(
                "{NAME}: php-fpm at {} answered \"File not found.\" for FCGI_STATUS_PATH={}; set \
                 it to the pool's pm.status_path (this mode reads the status page, not the ping)\n",
                settings.connect, settings.path
            ));
        }
        out.code = EXIT_NO_PAGE;
        return out;
    }
    match verdict {
        Ok(()) => {}
        // The script passes on any answer but its `File not found.`: so do we, saying why it
        // is not a status page.
        Err(failure)
            if matches!(
                failure.reason,
                Reason::BadStatus | Reason::UnexpectedResponse
            ) =>
        {
            out.stderr.push_str(&format!("{NAME}: {failure}"));
            if answer.stderr_len > 0 {
                let cut = if answer.stderr_len > answer.stderr.len() {
                    "..."
                } else {
                    ""
                };
                out.stderr.push_str(&format!(
                    " php-fpm said: {:?}{cut}.",
                    String::from_utf8_lossy(&answer.stderr)
                ));
            }
            if options.checks.is_empty() {
                out.stderr.push_str(
                    " Passing all the same, as the script does; set FCGI_STATUS_PATH to the \
                     pool's pm.status_path",
                );
            }
            out.stderr.push('\n');
        }
        Err(failure) => {
            out.stderr.push_str("php-fpm status page non reachable\n");
            out.stderr.push_str(&format!("{NAME}: {failure}\n"));
            out.code = EXIT_NO_PAGE;
            return out;
        }
    }
    let page = status::parse(body).ok();
    for check in &options.checks {
        let value = page.as_ref().and_then(|page| page.text(&check.field));
        let limit = check.limit;
        if options.verbose {
            out.stdout.push_str(&format!(
                "'{}' value '{}' and expected is less than '{limit}'\n",
                check.field,
                printable(value.unwrap_or_default().as_bytes())
            ));
        }
        let Some(value) = value else {
            out.stderr.push_str(&format!(
                "{NAME}: '{}' is missing from the status page at {}{}; is FCGI_STATUS_PATH \
                 php-fpm's pm.status_path?\n",
                check.field, settings.connect, settings.path
            ));
            out.code = EXIT_CHECK_FAILED;
            return out;
        };
        let Ok(number) = value.parse::<u64>().map(i128::from) else {
            out.stderr.push_str(&format!(
                "{NAME}: '{}' value '{}' on the status page is not an integer\n",
                check.field,
                printable(value.as_bytes())
            ));
            out.code = EXIT_CHECK_FAILED;
            return out;
        };
        if number > i128::from(limit) {
            out.stderr.push_str(&format!(
                "'{}' value '{value}' is greater than expected '{limit}'\n",
                check.field
            ));
            out.code = EXIT_CHECK_FAILED;
            return out;
        }
    }
    out
}

/// The answer as the script compares it: `cgi-fcgi`'s output from its fifth line on (`tail +5`),
/// without the line feeds that end it (the shell's `$(...)`).
fn from_fifth_line(stdout: &[u8]) -> &[u8] {
    let mut rest = stdout;
    for _ in 0..4 {
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            return &[];
        };
        rest = rest.get(lf.saturating_add(1)..).unwrap_or_default();
    }
    let kept = rest
        .iter()
        .rposition(|&b| b != b'\n')
        .map_or(0, |last| last.saturating_add(1));
    rest.get(..kept).unwrap_or_default()
}

/// No answer: a connect failure exits with its errno, a timeout with 124, anything else 8.
fn without_answer(mut out: Outcome, failure: &Failure) -> Outcome {
    out.stderr
        .push_str(&format!("{NAME}: {failure}{}\n", hint(failure)));
    out.code = match failure.reason {
        Reason::Timeout => EXIT_TIMEOUT,
        Reason::ResolveFailed => EXIT_UNKNOWN_HOST,
        _ => match failure.errno.and_then(|errno| u8::try_from(errno).ok()) {
            Some(errno) if errno > 0 => errno,
            _ => {
                out.stderr = format!("php-fpm status page non reachable\n{}", out.stderr);
                EXIT_NO_PAGE
            }
        },
    };
    out
}

/// What to look at after a failure without an answer, naming the setting (a permission
/// failure's detail says what to do already: the address is right).
fn hint(failure: &Failure) -> &'static str {
    match failure.reason {
        Reason::ConnectFailed if failure.errno == Some(libc::EACCES) => "",
        Reason::ConnectFailed | Reason::ResolveFailed => {
            "; is FCGI_CONNECT php-fpm's listen address?"
        }
        Reason::Timeout => {
            "; are php-fpm's workers hung? (--timeout=SECONDS sets the deadline, 30 by default)"
        }
        _ => "",
    }
}

/// The text of `bytes` with control characters other than line feeds and tabs escaped, so that
/// a peer cannot drive the terminal; trailing line feeds dropped (as the shell's `$(...)`).
fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown = String::with_capacity(text.len());
    for c in text.trim_end_matches('\n').chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// Whether the program was started as `php-fpm-healthcheck` (the base name of `argv[0]`).
pub fn invoked_as(argv0: Option<&OsStr>) -> bool {
    argv0
        .and_then(|argv0| Path::new(argv0).file_name())
        .is_some_and(|name| name == NAME)
}

/// Runs the mode: `args` without the program name (and without the `php-fpm-healthcheck`
/// argument that selected it); returns the exit status.
pub fn main<E>(args: &[OsString], env: E) -> u8
where
    E: Fn(&str) -> Option<OsString>,
{
    let ready = parse_args(args).and_then(|options| {
        let settings = settings(env, options.timeout)?;
        Ok((options, settings))
    });
    let (options, settings) = match ready {
        Ok(ready) => ready,
        Err(Invalid(lines)) => {
            write(true, &lines);
            return EXIT_INVALID;
        }
    };
    if options.verbose {
        write(false, &announce(&settings));
    }
    let probe = Probe::literal_status(&settings.destination, &settings.path, settings.timeout);
    let (verdict, answer) = smol::block_on(probe.run());
    let done = outcome(&options, &settings, verdict, answer.as_ref());
    write(false, &done.stdout);
    write(true, &done.stderr);
    done.code
}

/// Writes to stdout or stderr; a closed or full stream loses the text, not the exit status.
fn write(to_stderr: bool, text: &str) {
    if text.is_empty() {
        return;
    }
    let _ = if to_stderr {
        std::io::stderr().lock().write_all(text.as_bytes())
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn args(list: &[&str]) -> Result<Options, Invalid> {
        let list: Vec<OsString> = list.iter().map(OsString::from).collect();
        parse_args(&list)
    }

    fn check(field: &str, limit: i64) -> Check {
        Check {
            field: field.to_owned(),
            limit,
        }
    }

    fn env_settings(vars: &[(&str, &str)], timeout: Option<Duration>) -> Result<Settings, Invalid> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        settings(|name| vars.get(name).cloned(), timeout)
    }

    fn answer(stdout: &str, stderr: &str) -> Answer {
        Answer {
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            stderr_len: stderr.len(),
            app_status: 0,
            protocol_status: 0,
            stdout_truncated: false,
        }
    }

    const PAGE: &str = "Content-type: text/plain;charset=UTF-8\r\n\r\n\
        pool:                 www\n\
        process manager:      static\n\
        accepted conn:        12\n\
        listen queue:         0\n\
        max listen queue:     3\n\
        idle processes:       1\n";

    /// The verdict the probe of `/status` at the default FCGI_CONNECT gives on `answer`.
    fn as_probed(answer: &Answer) -> Verdict {
        let asked = crate::probe::judge::Asked {
            label: "localhost:9000",
            path: "/status",
            setting: "pm.status_path",
            expect: b"",
            // As Probe::literal_status asks it: the script's verdicts, no `not_configured`.
            status_page: false,
        };
        crate::probe::judge::judge(answer, asked)
    }

    fn run(options: &Options, answer: &Answer) -> Outcome {
        let settings = env_settings(&[], None).unwrap();
        outcome(options, &settings, Ok(()), Some(answer))
    }

    #[test]
    fn every_field_with_equals_and_with_a_space() {
        for field in FIELDS {
            let spaced = field.replace('-', " ");
            for list in [
                vec![format!("--{field}=7")],
                vec![format!("--{field}"), "7".to_owned()],
            ] {
                let list: Vec<&str> = list.iter().map(String::as_str).collect();
                assert_eq!(
                    args(&list).unwrap().checks,
                    vec![check(&spaced, 7)],
                    "{list:?}"
                );
            }
        }
    }

    #[test]
    fn verbose_order_and_ignored_arguments() {
        let options = args(&[
            "stray",
            "--listen-queue",
            "-3",
            "-v",
            "--accepted-conn=+5",
            "--",
            "--nope",
        ])
        .unwrap();
        assert!(options.verbose);
        assert_eq!(
            options.checks,
            vec![check("listen queue", -3), check("accepted conn", 5)]
        );
        assert!(args(&["--verbose"]).unwrap().verbose);
        assert!(args(&["-vv"]).unwrap().verbose);
        assert_eq!(args(&[]).unwrap(), Options::default());
        // The value of `--FIELD N` is the next argument, whatever it is.
        assert_eq!(
            args(&["--slow-requests", "--verbose"]).unwrap_err().0,
            "'--slow-requests' option value must be an integer, '--verbose' given\n"
        );
    }

    #[test]
    fn invalid_options_print_each_problem_then_terminate() {
        assert_eq!(
            args(&[
                "--foo=1",
                "-x",
                "--verbose=1",
                "--accepted-conn=abc",
                "--help",
                "--idle-processes"
            ])
            .unwrap_err()
            .0,
            "php-fpm-healthcheck: unrecognized option '--foo=1'\n\
             php-fpm-healthcheck: invalid option -- 'x'\n\
             php-fpm-healthcheck: option '--verbose' doesn't allow an argument\n\
             php-fpm-healthcheck: unrecognized option '--help'\n\
             php-fpm-healthcheck: option '--idle-processes' requires an argument\n\
             Invalid options, terminating.\n"
        );
        // Not options here: our `check --status` forms, and abbreviations of `--timeout`.
        for bad in [
            "--max-listen-queue-len=1",
            "--listen_queue=1",
            "--min-idle-processes=1",
            "--time=1",
        ] {
            assert_eq!(
                args(&[bad]).unwrap_err().0,
                format!("php-fpm-healthcheck: unrecognized option '{bad}'\nInvalid options, terminating.\n")
            );
        }
    }

    /// As GNU getopt reads the original's options: an exact name, or a prefix of exactly one.
    #[test]
    fn abbreviations_as_getopt_reads_them() {
        let options = args(&[
            "--accepted",
            "5",
            "--listen-queue-l=3",
            "--listen-queue=2",
            "--t=9",
            "--verb",
        ])
        .unwrap();
        assert!(options.verbose);
        assert_eq!(
            options.checks,
            vec![
                check("accepted conn", 5),
                check("listen queue len", 3),
                check("listen queue", 2),
                check("total processes", 9)
            ]
        );
        assert_eq!(
            args(&["--max=1", "--listen", "3", "--verb=1", "--accepted"]).unwrap_err().0,
            "php-fpm-healthcheck: option '--max=1' is ambiguous; possibilities: '--max-listen-queue' '--max-active-processes' '--max-children-reached'\n\
             php-fpm-healthcheck: option '--listen' is ambiguous; possibilities: '--listen-queue' '--listen-queue-len'\n\
             php-fpm-healthcheck: option '--verbose' doesn't allow an argument\n\
             php-fpm-healthcheck: option '--accepted-conn' requires an argument\n\
             Invalid options, terminating.\n"
        );
        assert_eq!(
            args(&["--accepted=x"]).unwrap_err().0,
            "'--accepted-conn' option value must be an integer, 'x' given\n"
        );
    }

    #[test]
    fn values_must_be_integers_in_order() {
        for (value, shown) in [
            ("abc", "abc"),
            ("", ""),
            ("1.5", "1.5"),
            ("- 1", "- 1"),
            ("99999999999999999999", "99999999999999999999"),
            ("+", "+"),
        ] {
            let arg = format!("--accepted-conn={value}");
            assert_eq!(
                args(&[&arg, "--listen-queue=x"]).unwrap_err().0,
                format!("'--accepted-conn' option value must be an integer, '{shown}' given\n")
            );
        }
        assert_eq!(
            args(&["--max-children-reached=-0"]).unwrap().checks,
            vec![check("max children reached", 0)]
        );
        // Blanks around the number are dropped, as the original's shell drops them.
        assert_eq!(
            args(&["--slow-requests= 7 "]).unwrap().checks,
            vec![check("slow requests", 7)]
        );
        assert!(args(&["--slow-requests=0x5"]).is_err());
    }

    #[test]
    fn timeout_in_whole_seconds_or_a_duration_and_no_variable() {
        assert_eq!(
            args(&["--timeout=1"]).unwrap().timeout,
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            args(&["--timeout", "3600"]).unwrap().timeout,
            Some(Duration::from_secs(3600))
        );
        // Durations are ours, beyond the upstream branch's whole seconds.
        assert_eq!(
            args(&["--timeout=0.25"]).unwrap().timeout,
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            args(&["--timeout=500ms"]).unwrap().timeout,
            Some(Duration::from_millis(500))
        );
        // The upstream branch's message for what is not a number (its test_timeout.py).
        // (A number too large for the shell's `test` is not an integer there either.)
        for bad in ["", "abc", "1x", "99999999999999999999"] {
            let text = args(&[&format!("--timeout={bad}")]).unwrap_err().0;
            assert!(
                text.starts_with(&format!(
                    "'--timeout' option value must be an integer, '{bad}' given"
                )),
                "{text}"
            );
        }
        for bad in ["0", "-1", "3601"] {
            assert_eq!(
                args(&[&format!("--timeout={bad}")]).unwrap_err().0,
                format!(
                    "'--timeout' option value must be between 1 and 3600 seconds, '{bad}' given\n"
                )
            );
        }
        // The deadline is --timeout or 30 s (Docker's HEALTHCHECK default); an application's
        // TIMEOUT is not read, whatever it holds.
        for vars in [
            &[][..],
            &[("TIMEOUT", "7200")][..],
            &[("TIMEOUT", "0")][..],
            &[("TIMEOUT", "soon")][..],
        ] {
            assert_eq!(
                env_settings(vars, None).unwrap().timeout,
                Duration::from_secs(30)
            );
            assert_eq!(
                env_settings(vars, Some(Duration::from_secs(2)))
                    .unwrap()
                    .timeout,
                Duration::from_secs(2)
            );
        }
    }

    /// The variables read: only FCGI_CONNECT and FCGI_STATUS_PATH.
    #[test]
    fn reads_only_its_own_variables() {
        let asked = std::cell::RefCell::new(Vec::new());
        let read = |name: &str| {
            asked.borrow_mut().push(name.to_owned());
            None
        };
        settings(read, None).unwrap();
        assert_eq!(*asked.borrow(), ["FCGI_CONNECT", "FCGI_STATUS_PATH"]);
    }

    #[test]
    fn fcgi_connect_as_cgi_fcgi_reads_it() {
        let tcp = |host: Host, port| Destination::Tcp { host, port };
        let name = |n: &str| Host::Name(n.to_owned());
        assert_eq!(
            destination("localhost:9000").unwrap(),
            tcp(name("localhost"), 9000)
        );
        assert_eq!(destination(":9001").unwrap(), tcp(name("localhost"), 9001));
        assert_eq!(
            destination("127.0.0.1:9").unwrap(),
            tcp(Host::Ip("127.0.0.1".parse().unwrap()), 9)
        );
        assert_eq!(
            destination("[::1]:9").unwrap(),
            tcp(Host::Ip("::1".parse().unwrap()), 9)
        );
        assert_eq!(destination("abc").unwrap(), Destination::Unix("abc".into()));
        assert_eq!(
            destination("/run/php/fpm.sock").unwrap(),
            Destination::Unix("/run/php/fpm.sock".into())
        );
        for bad in [
            "localhost:",
            "localhost:0",
            "localhost:65536",
            "local host:9000",
            "/run/a:b",
        ] {
            assert!(
                destination(bad).unwrap_err().0.contains("FCGI_CONNECT"),
                "{bad}"
            );
        }
        assert!(destination(&"/x".repeat(60)).is_err());
        let settings =
            env_settings(&[("FCGI_CONNECT", ""), ("FCGI_STATUS_PATH", "")], None).unwrap();
        assert_eq!(
            (settings.connect.as_str(), settings.path.as_str()),
            ("localhost:9000", "/status")
        );
        assert!(env_settings(&[("FCGI_STATUS_PATH", &"/s".repeat(600))], None).is_err());
    }

    #[test]
    fn checks_fail_only_above_the_limit_in_order_and_verbose_says_each() {
        let options = Options {
            verbose: true,
            checks: vec![
                check("accepted conn", 12),
                check("max listen queue", 2),
                check("listen queue", 0),
            ],
            timeout: None,
        };
        let done = run(&options, &answer(PAGE, ""));
        assert_eq!(done.code, EXIT_CHECK_FAILED);
        assert_eq!(
            done.stdout,
            format!(
                "php-fpm status output:\n{}\n\
                 'accepted conn' value '12' and expected is less than '12'\n\
                 'max listen queue' value '3' and expected is less than '2'\n",
                PAGE.split_once("\r\n\r\n").unwrap().1.trim_end()
            )
        );
        assert_eq!(
            done.stderr,
            "'max listen queue' value '3' is greater than expected '2'\n"
        );
        let quiet = Options {
            verbose: false,
            ..options
        };
        let done = run(&quiet, &answer(PAGE, ""));
        assert_eq!((done.stdout.as_str(), done.code), ("", EXIT_CHECK_FAILED));
        let done = run(
            &Options {
                checks: vec![check("idle processes", 1)],
                ..quiet
            },
            &answer(PAGE, ""),
        );
        assert_eq!(
            (done.stdout.as_str(), done.stderr.as_str(), done.code),
            ("", "", EXIT_OK)
        );
    }

    #[test]
    fn a_missing_field_fails_naming_it() {
        let options = Options {
            checks: vec![check("slow requests", 100)],
            ..Options::default()
        };
        let done = run(&options, &answer(PAGE, ""));
        assert_eq!(done.code, EXIT_CHECK_FAILED);
        assert_eq!(
            done.stderr,
            "php-fpm-healthcheck: 'slow requests' is missing from the status page at \
             localhost:9000/status; is FCGI_STATUS_PATH php-fpm's pm.status_path?\n"
        );
        // Not a status page at all (php-fpm's ping): every field is missing; without checks it passes.
        let pong = answer("Content-type: text/plain\r\n\r\npong", "");
        assert_eq!(run(&options, &pong).code, EXIT_CHECK_FAILED);
        assert_eq!(run(&Options::default(), &pong).code, EXIT_OK);
    }

    /// The script's lines from the fifth on, as `tail +5` and `$(...)` make them.
    #[test]
    fn the_answer_from_its_fifth_line_on() {
        assert_eq!(
            from_fifth_line(b"1\n2\n3\n4\nFile not found.\n\n"),
            NOT_FOUND
        );
        assert_eq!(
            from_fifth_line(b"1\r\n2\r\n3\r\n\r\nFile not found.\n"),
            NOT_FOUND
        );
        assert_eq!(from_fifth_line(b"1\n2\n3\n4\nFile not found."), NOT_FOUND);
        assert_eq!(from_fifth_line(b"1\n2\n3\n4\n5\n6\n"), b"5\n6");
        assert_eq!(from_fifth_line(b"1\n2\n\nFile not found.\n"), b"");
        assert_eq!(from_fifth_line(b"1\n2\n3\n4"), b"");
        assert_eq!(from_fifth_line(b"1\n2\n3\n4\n\n\n"), b"");
        assert_eq!(from_fifth_line(b""), b"");
        assert_eq!(
            from_fifth_line(b"1\n2\n3\n4\nFile not found.\r\n"),
            b"File not found.\r"
        );
    }

    /// Exit 8 exactly where the script exits 8: php-fpm's 404 with three header lines (with
    /// X-Powered-By). With two (Debian's expose_php = Off) the script's fifth line is past the
    /// body, and it passes: so do we, saying what is wrong.
    #[test]
    fn exit_8_by_the_script_s_rule_and_a_pass_saying_why_elsewhere() {
        let verbose = Options {
            verbose: true,
            ..Options::default()
        };
        let settings = env_settings(&[], None).unwrap();
        let judged = |stdout: &str, stderr: &str| {
            let answer = answer(stdout, stderr);
            outcome(&verbose, &settings, as_probed(&answer), Some(&answer))
        };
        let powered = "Status: 404 Not Found\r\nX-Powered-By: PHP/8.2.36\r\nContent-type: text/html; charset=UTF-8\r\n\r\nFile not found.\n";
        let done = judged(powered, "Primary script unknown");
        assert_eq!(done.code, EXIT_NO_PAGE);
        assert_eq!(done.stdout, "php-fpm status output:\nFile not found.\n");
        assert_eq!(
            done.stderr,
            "php-fpm status page non reachable\n\
             php-fpm-healthcheck: php-fpm at localhost:9000 answered \"File not found.\" for \
             FCGI_STATUS_PATH=/status; set it to the pool's pm.status_path (this mode reads the \
             status page, not the ping)\n"
        );
        // Without -v, the script's line alone.
        let quiet = outcome(
            &Options::default(),
            &settings,
            Ok(()),
            Some(&answer(powered, "")),
        );
        assert_eq!(
            (quiet.code, quiet.stdout.as_str(), quiet.stderr.as_str()),
            (EXIT_NO_PAGE, "", "php-fpm status page non reachable\n")
        );
        let debian = "Status: 404 Not Found\r\nContent-type: text/html; charset=UTF-8\r\n\r\nFile not found.\n";
        let done = judged(debian, "Primary script unknown");
        assert_eq!(done.code, EXIT_OK);
        assert_eq!(done.stdout, "php-fpm status output:\nFile not found.\n");
        assert_eq!(
            done.stderr,
            "php-fpm-healthcheck: bad_status: localhost:9000 answered /status with Status: \
             \"404 Not Found\"; is pm.status_path = /status set in the php-fpm pool? php-fpm \
             said: \"Primary script unknown\". Passing all the same, as the script does; set \
             FCGI_STATUS_PATH to the pool's pm.status_path\n"
        );
        let forbidden = "Status: 403 Forbidden\r\nX-Powered-By: PHP/8.2.36\r\nContent-type: text/html; charset=UTF-8\r\n\r\nAccess denied.\n";
        let done = judged(forbidden, "");
        assert_eq!(done.code, EXIT_OK);
        assert!(done.stderr.contains("\"403 Forbidden\""), "{done:?}");
        assert!(!done.stderr.contains("php-fpm said"), "{done:?}");
        // Not a CGI answer at all: the script passes on that too.
        let done = judged("", "");
        assert_eq!(done.code, EXIT_OK);
        assert!(done
            .stderr
            .starts_with("php-fpm-healthcheck: unexpected_response: "));
        // A 200 whose body is `File not found.` on line 5 is the script's missing page as well.
        let done = judged("A: 1\r\nB: 2\r\nC: 3\r\n\r\nFile not found.", "");
        assert_eq!(done.code, EXIT_NO_PAGE);
        // With a check, a broken answer is a missing field (exit 1), not a pass.
        let checked = Options {
            checks: vec![check("listen queue", 10)],
            ..Options::default()
        };
        let answer = answer(debian, "");
        let done = outcome(&checked, &settings, as_probed(&answer), Some(&answer));
        assert_eq!(done.code, EXIT_CHECK_FAILED);
        assert!(!done.stderr.contains("Passing"), "{done:?}");
        assert!(done
            .stderr
            .ends_with("is FCGI_STATUS_PATH php-fpm's pm.status_path?\n"));
    }

    #[test]
    fn other_unusable_answers_exit_8_saying_why() {
        let settings = env_settings(&[], None).unwrap();
        let overloaded = answer("Content-type: text/plain\r\n\r\n", "");
        let verdict = Err(Failure::new(
            Reason::FcgiOverloaded,
            "OVERLOADED".to_owned(),
        ));
        let done = outcome(&Options::default(), &settings, verdict, Some(&overloaded));
        assert_eq!(done.code, EXIT_NO_PAGE);
        assert_eq!(
            done.stderr,
            "php-fpm status page non reachable\nphp-fpm-healthcheck: fcgi_overloaded: OVERLOADED\n"
        );
        let verbose = Options {
            verbose: true,
            ..Options::default()
        };
        let hostile = answer("Content-type: text/plain\r\n\r\npool: \x1b[2J\n\n\n", "");
        assert_eq!(
            run(&verbose, &hostile).stdout,
            "php-fpm status output:\npool: \\u{1b}[2J\n"
        );
    }

    #[test]
    fn without_an_answer_the_exit_status_is_the_errno_or_124() {
        let settings = env_settings(&[], None).unwrap();
        let failed = |reason, errno| {
            let failure = Failure::with_errno(reason, "detail".to_owned(), errno);
            outcome(
                &Options {
                    verbose: true,
                    ..Options::default()
                },
                &settings,
                Err(failure),
                None,
            )
        };
        let listen = "; is FCGI_CONNECT php-fpm's listen address?";
        let hung =
            "; are php-fpm's workers hung? (--timeout=SECONDS sets the deadline, 30 by default)";
        for (reason, errno, code, hint) in [
            (Reason::ConnectRefused, Some(111), 111, ""),
            (Reason::ConnectFailed, Some(2), 2, listen),
            (Reason::ConnectFailed, Some(111), 111, listen),
            // The detail of a permission failure says what to do; the address is right.
            (Reason::ConnectFailed, Some(13), 13, ""),
            (Reason::FcgiOverloaded, Some(11), 11, ""),
            (Reason::Timeout, None, EXIT_TIMEOUT, hung),
            (Reason::ResolveFailed, None, EXIT_UNKNOWN_HOST, listen),
        ] {
            let done = failed(reason, errno);
            assert_eq!(done.code, code, "{reason}");
            assert_eq!(
                done.stderr,
                format!("php-fpm-healthcheck: {reason}: detail{hint}\n")
            );
            assert_eq!(done.stdout, "", "no status output without an answer");
        }
        for (reason, errno, hint) in [
            (Reason::ClosedEarly, None, ""),
            (Reason::ConnectFailed, Some(300), listen),
            (Reason::ProtocolError, None, ""),
        ] {
            let done = failed(reason, errno);
            assert_eq!(done.code, EXIT_NO_PAGE);
            assert_eq!(
                done.stderr,
                format!(
                    "php-fpm status page non reachable\nphp-fpm-healthcheck: {reason}: detail{hint}\n"
                )
            );
        }
    }

    #[test]
    fn the_mode_by_name() {
        assert!(invoked_as(Some(OsStr::new("php-fpm-healthcheck"))));
        assert!(invoked_as(Some(OsStr::new(
            "/usr/local/bin/php-fpm-healthcheck"
        ))));
        assert!(!invoked_as(Some(OsStr::new(
            "/usr/bin/fastcgi-healthcheck"
        ))));
        assert!(!invoked_as(Some(OsStr::new("php-fpm-healthcheck.sh"))));
        assert!(!invoked_as(None));
        let settings = env_settings(
            &[
                ("FCGI_CONNECT", "/run/php.sock"),
                ("FCGI_STATUS_PATH", "/fpm-status"),
            ],
            None,
        )
        .unwrap();
        assert_eq!(
            announce(&settings),
            "Trying to connect to php-fpm via: /run/php.sock/fpm-status\n"
        );
    }
}
