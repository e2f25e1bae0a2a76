//! The judge: a complete FastCGI answer becomes a verdict. Pure: no I/O, no logging, no clock.

use crate::proto::cgi::{self, CgiError};
use crate::proto::fcgi::{protocol_status, Answer};

use super::{Failure, Reason, Verdict};

/// What the probe asked, for the words of a failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked<'a> {
    /// The destination as shown in messages.
    pub(crate) label: &'a str,
    /// The path asked for.
    pub(crate) path: &'a str,
    /// The php-fpm pool setting that makes it answer `path` (for hints).
    pub(crate) setting: &'a str,
    /// Text the body must contain (empty: any body).
    pub(crate) expect: &'a [u8],
    /// php-fpm's status page (as the server and `check` read it): a 404 is `not_configured`.
    pub(crate) status_page: bool,
}

/// Turns a complete answer into a verdict.
pub(crate) fn judge(answer: &Answer, asked: Asked<'_>) -> Verdict {
    let name = match answer.protocol_status {
        protocol_status::REQUEST_COMPLETE => None,
        protocol_status::OVERLOADED => Some((Reason::FcgiOverloaded, "OVERLOADED")),
        protocol_status::CANT_MPX_CONN => Some((Reason::FcgiRejected, "CANT_MPX_CONN")),
        protocol_status::UNKNOWN_ROLE => Some((Reason::FcgiRejected, "UNKNOWN_ROLE")),
        _ => Some((Reason::FcgiRejected, "unknown")),
    };
    if let Some((reason, name)) = name {
        return Err(Failure::new(
            reason,
            format!(
                "{} ended the request with protocol status {} ({name})",
                asked.label, answer.protocol_status
            ),
        ));
    }
    cgi::check(&answer.stdout, asked.expect).map_err(|e| {
        let (reason, hint) = match &e {
            CgiError::BadStatus(_) if asked.status_page && not_found(&answer.stdout) => {
                (Reason::NotConfigured, not_configured(asked.path))
            }
            CgiError::BadStatus(_) | CgiError::UnparsableStatus(_) => (
                Reason::BadStatus,
                format!(
                    "is {} = {} set in the php-fpm pool?",
                    asked.setting, asked.path
                ),
            ),
            CgiError::BodyMismatch(_) => (
                Reason::UnexpectedResponse,
                format!(
                    "expected {} (PING_RESPONSE / ping.response)",
                    cgi::quote(asked.expect)
                ),
            ),
            CgiError::NoHeaderEnd => (
                Reason::UnexpectedResponse,
                "is it php-fpm's ping.path?".to_owned(),
            ),
        };
        Failure::new(
            reason,
            format!("{} answered {} with {e}; {hint}", asked.label, asked.path),
        )
    })
}

/// Whether the CGI answer `stdout` says `Status: 404`.
fn not_found(stdout: &[u8]) -> bool {
    cgi::split(stdout)
        .and_then(|(headers, _)| cgi::status_header(headers))
        .and_then(cgi::status_code)
        == Some(404)
}

/// What to do about a status page at `path` (its query left out) that php-fpm does not serve:
/// set it, with the line for Debian's commented-out `;pm.status_path = /status`, or turn it off.
fn not_configured(path: &str) -> String {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    format!(
        "the status page is not configured: set pm.status_path = {path} in the php-fpm pool \
         (Debian: sed -i 's|^;pm.status_path = /status$|pm.status_path = {path}|' \
         /etc/php/*/fpm/pool.d/www.conf, then reload php-fpm), or STATUS_PATH=off to stop asking"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKED: Asked<'static> = Asked {
        label: "127.0.0.1:9000",
        path: "/fpm-ping",
        setting: "ping.path",
        expect: b"pong",
        status_page: false,
    };

    fn answer(stdout: &[u8], protocol_status: u8) -> Answer {
        Answer {
            stdout: stdout.to_vec(),
            stderr: Vec::new(),
            stderr_len: 0,
            app_status: 0,
            protocol_status,
            stdout_truncated: false,
        }
    }

    #[test]
    fn judges_by_protocol_status_then_cgi_status_then_body() {
        let pong = b"Content-type: text/plain\r\n\r\npong";
        assert_eq!(judge(&answer(pong, 0), ASKED), Ok(()));
        let reason =
            |stdout: &[u8], status| judge(&answer(stdout, status), ASKED).unwrap_err().reason;
        assert_eq!(
            reason(pong, protocol_status::OVERLOADED),
            Reason::FcgiOverloaded
        );
        assert_eq!(
            reason(pong, protocol_status::UNKNOWN_ROLE),
            Reason::FcgiRejected
        );
        assert_eq!(reason(pong, 9), Reason::FcgiRejected);
        let not_found = b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.";
        let failure = judge(&answer(not_found, 0), ASKED).unwrap_err();
        assert_eq!(failure.reason, Reason::BadStatus);
        assert!(
            failure.detail.contains("ping.path = /fpm-ping"),
            "{failure}"
        );
        assert_eq!(
            reason(b"Content-type: text/plain\r\n\r\npang", 0),
            Reason::UnexpectedResponse
        );
        assert_eq!(reason(b"no head end", 0), Reason::UnexpectedResponse);
    }

    /// The status page answered 404 is not configured, with the fix in the detail; answered
    /// otherwise, or a ping answered 404, it is `bad_status` as before.
    #[test]
    fn a_status_page_answered_404_is_not_configured() {
        let status = Asked {
            path: "/fpm-status?full",
            setting: "pm.status_path",
            expect: b"",
            status_page: true,
            ..ASKED
        };
        let not_found =
            b"Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n";
        let failure = judge(&answer(not_found, 0), status).unwrap_err();
        assert_eq!(failure.reason, Reason::NotConfigured);
        assert_eq!(
            failure.to_string(),
            "not_configured: 127.0.0.1:9000 answered /fpm-status?full with Status: \"404 Not Found\"; the status page is not configured: \
             set pm.status_path = /fpm-status in the php-fpm pool (Debian: sed -i \
             's|^;pm.status_path = /status$|pm.status_path = /fpm-status|' /etc/php/*/fpm/pool.d/www.conf, \
             then reload php-fpm), or STATUS_PATH=off to stop asking"
        );
        let denied = b"Status: 403 Forbidden\r\n\r\nAccess denied.\n";
        assert_eq!(
            judge(&answer(denied, 0), status).unwrap_err().reason,
            Reason::BadStatus
        );
        assert_eq!(
            judge(&answer(not_found, 0), ASKED).unwrap_err().reason,
            Reason::BadStatus
        );
    }
}
