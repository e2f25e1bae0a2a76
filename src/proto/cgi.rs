//! The CGI response inside FastCGI stdout: headers, an optional `Status:`, and the body.
//!
//! Pure functions over bytes; they never panic and never allocate on the healthy path.

use std::fmt;

/// Why a CGI response is not a healthy ping answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgiError {
    /// No blank line ends the headers.
    NoHeaderEnd,
    /// A `Status:` header that is not 2xx; holds its value, quoted by [`quote`] (e.g.
    /// `"404 Not Found"`): the peer's bytes reach terminals and HTTP bodies only escaped.
    BadStatus(String),
    /// A `Status:` header whose value has no 3-digit code; quoted as [`CgiError::BadStatus`].
    UnparsableStatus(String),
    /// The body does not contain the expected text; holds the start of the body.
    BodyMismatch(String),
}

impl fmt::Display for CgiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CgiError::NoHeaderEnd => {
                write!(f, "the answer has no blank line after its CGI headers")
            }
            CgiError::BadStatus(status) => write!(f, "Status: {status}"),
            CgiError::UnparsableStatus(status) => {
                write!(f, "the answer has an unreadable Status: {status}")
            }
            CgiError::BodyMismatch(start) => write!(
                f,
                "the body does not contain the expected text; it starts {start}"
            ),
        }
    }
}

/// How many bytes of a header value or body an error quotes.
const QUOTED_BYTES: usize = 64;

/// Quotes up to [`QUOTED_BYTES`] of `bytes` as a Rust-style escaped string, safe for one log line.
pub fn quote(bytes: &[u8]) -> String {
    let shown = bytes.get(..QUOTED_BYTES).unwrap_or(bytes);
    let mut text = format!("{:?}", String::from_utf8_lossy(shown));
    if shown.len() < bytes.len() {
        text.push_str("...");
    }
    text
}

/// Splits a CGI response into headers and body at the first blank line (`\r\n\r\n` or `\n\n`),
/// in one pass over the line feeds.
pub fn split(stdout: &[u8]) -> Option<(&[u8], &[u8])> {
    let (at, len) = stdout
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .find_map(|(lf, _)| {
            let next = lf.checked_add(1)?;
            match stdout.get(next..)? {
                [b'\n', ..] => Some((lf, 2)),
                [b'\r', b'\n', ..] => {
                    let cr = lf.checked_sub(1)?;
                    (stdout.get(cr) == Some(&b'\r')).then_some((cr, 4))
                }
                _ => None,
            }
        })?;
    Some((stdout.get(..at)?, stdout.get(at.checked_add(len)?..)?))
}

/// The value of the `Status:` header, if any (trimmed).
pub fn status_header(headers: &[u8]) -> Option<&[u8]> {
    headers.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (line.get(..colon)?, line.get(colon.checked_add(1)?..)?);
        name.trim_ascii()
            .eq_ignore_ascii_case(b"status")
            .then(|| value.trim_ascii())
    })
}

/// The 3-digit code at the start of a `Status:` value.
pub fn status_code(value: &[u8]) -> Option<u16> {
    let digits = value.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit)
        || value.get(3).is_some_and(|b| !b.is_ascii_whitespace())
    {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Checks a ping answer: no `Status:` or a 2xx one, and a body that contains `expect`.
pub fn check(stdout: &[u8], expect: &[u8]) -> Result<(), CgiError> {
    let (headers, body) = split(stdout).ok_or(CgiError::NoHeaderEnd)?;
    if let Some(value) = status_header(headers) {
        match status_code(value) {
            Some(200..=299) => {}
            Some(_) => return Err(CgiError::BadStatus(quote(value))),
            None => return Err(CgiError::UnparsableStatus(quote(value))),
        }
    }
    if expect.is_empty() || find(body, expect).is_some() {
        Ok(())
    } else {
        Err(CgiError::BodyMismatch(quote(body)))
    }
}

/// The position of the first `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    // Comparing the first byte first keeps `memcmp` out of the loop.
    haystack
        .windows(needle.len())
        .position(|window| window.first() == needle.first() && window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PONG: &[u8] = b"Content-type: text/plain;charset=UTF-8\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\nCache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n\r\npong";
    const NOT_FOUND: &[u8] =
        b"Status: 404 Not Found\r\nContent-type: text/html; charset=UTF-8\r\n\r\nFile not found.\n";

    #[test]
    fn php_fpm_pong_is_healthy() {
        assert_eq!(check(PONG, b"pong"), Ok(()));
        assert_eq!(check(PONG, b""), Ok(()));
        assert_eq!(check(b"Status: 200 OK\n\npong\n", b"pong"), Ok(()));
    }

    #[test]
    fn php_fpm_not_found_is_bad_status() {
        assert_eq!(
            check(NOT_FOUND, b"pong"),
            Err(CgiError::BadStatus("\"404 Not Found\"".into()))
        );
        assert_eq!(
            check(b"status:503\r\n\r\n", b""),
            Err(CgiError::BadStatus("\"503\"".into()))
        );
    }

    #[test]
    fn a_status_value_reaches_the_reader_escaped() {
        // ESC and BEL from the peer would clear an operator's screen and ring the bell.
        let error = check(b"Status: 404 \x1b[2J\x07\r\n\r\n", b"").unwrap_err();
        let shown = error.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "Status: \"404 \\u{1b}[2J\\u{7}\"");
        let error = check(b"Status: \x1b]0;owned\x07\r\n\r\n", b"").unwrap_err();
        assert!(!error.to_string().chars().any(char::is_control), "{error}");
    }

    #[test]
    fn malformed_answers() {
        assert_eq!(check(b"", b"pong"), Err(CgiError::NoHeaderEnd));
        assert_eq!(check(b"pong", b"pong"), Err(CgiError::NoHeaderEnd));
        assert_eq!(
            check(b"Status: abc\r\n\r\npong", b"pong"),
            Err(CgiError::UnparsableStatus("\"abc\"".into()))
        );
        assert_eq!(
            check(b"Status: 2000\r\n\r\npong", b"pong"),
            Err(CgiError::UnparsableStatus("\"2000\"".into()))
        );
        assert!(
            matches!(check(PONG, b"pang"), Err(CgiError::BodyMismatch(start)) if start == "\"pong\"")
        );
    }

    #[test]
    fn the_first_blank_line_splits() {
        assert_eq!(
            split(b"A: 1\n\nbody\r\n\r\nmore"),
            Some((&b"A: 1"[..], &b"body\r\n\r\nmore"[..]))
        );
        assert_eq!(
            split(b"A: 1\r\n\r\nbody\n\n"),
            Some((&b"A: 1"[..], &b"body\n\n"[..]))
        );
        // A blank line without headers is a body only.
        assert_eq!(split(b"\r\n\r\npong"), Some((&b""[..], &b"pong"[..])));
        assert_eq!(split(b"\n\npong"), Some((&b""[..], &b"pong"[..])));
        // A line feed, carriage return, line feed is not a blank line; nor is a lone CR.
        assert_eq!(split(b"A: 1\n\r\nB"), None);
        assert_eq!(split(b"A: 1\r\r\n\r\nB"), Some((&b"A: 1\r"[..], &b"B"[..])));
        assert_eq!(split(b"A: 1\r\n\r"), None);
        assert_eq!(split(b"\n"), None);
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"ab", b""), Some(0));
    }

    /// Every string of up to 8 bytes over CR, LF and a letter splits where the earliest
    /// `\r\n\r\n` or `\n\n` is.
    #[test]
    fn split_agrees_with_the_earliest_blank_line() {
        fn reference(s: &[u8]) -> Option<(usize, usize)> {
            let at = |pat: &[u8]| s.windows(pat.len()).position(|w| w == pat);
            match (at(b"\r\n\r\n").map(|a| (a, 4)), at(b"\n\n").map(|a| (a, 2))) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        for len in 0..=8u32 {
            for code in 0..3usize.pow(len) {
                let mut rest = code;
                let input: Vec<u8> = (0..len)
                    .map(|_| {
                        let byte = [b'\r', b'\n', b'a'][rest % 3];
                        rest /= 3;
                        byte
                    })
                    .collect();
                let expected = reference(&input).map(|(at, n)| (&input[..at], &input[at + n..]));
                assert_eq!(split(&input), expected, "{input:?}");
            }
        }
    }

    #[test]
    fn quotes_escape_control_characters_and_cut() {
        assert_eq!(quote(b"a\x1b[31m\n"), "\"a\\u{1b}[31m\\n\"");
        assert!(quote(&[b'x'; 100]).ends_with("\"..."));
    }
}
