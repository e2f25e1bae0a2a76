//! HTTP/1.x for a health endpoint: request heads in (parsed by `httparse`, with limits), routes,
//! and the few fixed responses out, written by hand.
//!
//! Pure functions: the caller owns the buffer and the socket. [`parse_head`] is a push parser:
//! `Ok(None)` means "read more", and a head larger than [`MAX_HEAD_BYTES`] is an error, so the
//! caller never buffers more than that.

use std::io::Write;

use crate::limits::{MAX_HEADERS, MAX_HEAD_BYTES};

/// The request method, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: answered like `GET`, without the body.
    Head,
    /// Anything else.
    Other,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/fcgi-ping`: a FastCGI probe.
    Ping,
    /// `/fcgi-live`: the same probe, judged for liveness (busy is alive, stuck and dead are not).
    Live,
    /// `/health`, `/healthz`, `/`: this process is alive.
    Health,
    /// `/fcgi-status`: php-fpm's status page and thresholds on it.
    Status,
    /// `/metrics`: Prometheus exposition.
    Metrics,
    /// Anything else.
    NotFound,
}

/// What follows the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Nothing.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// A `Transfer-Encoding` body (we do not decode it; the connection is closed after).
    Chunked,
}

/// A parsed request head: only what the server needs, owned, no borrowed strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Bytes the head took in the buffer.
    pub len: usize,
    /// The method.
    pub method: Method,
    /// The route of the path (the query string is ignored).
    pub route: Route,
    /// Whether the client lets the connection stay open after the response.
    pub keep_alive: bool,
    /// The body that follows.
    pub body: Body,
    /// The query string, kept only for [`Route::Status`] (its thresholds).
    pub query: Option<Box<str>>,
    /// The pool a route names (`/fcgi-ping/NAME`, `/fcgi-live/NAME`, `/fcgi-status/NAME`).
    pub pool: Option<Box<str>>,
    /// `Expect: 100-continue`: the client waits for a `100 Continue` before it sends its body.
    /// We never need a body, so it is answered at once, without that interim answer.
    pub expect_continue: bool,
}

/// Why a request head cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD_BYTES`] or more than [`MAX_HEADERS`] lines: `431`.
    TooLarge,
    /// Not HTTP/1.x: `400`.
    Malformed,
}

impl HeadError {
    /// The status to answer with before closing.
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed => 400,
        }
    }
}

/// Parses the request head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let method = match request.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    };
    let target = request.path.unwrap_or_default();
    let (route, pool) = split_route(target);
    let pool = pool.map(Box::from);
    let query = (route == Route::Status).then(|| Box::from(query(target)));
    let http10 = request.version == Some(0);
    // `close` wins wherever it appears; HTTP/1.0 keeps the connection only when asked to.
    let (mut close, mut asked_keep_alive) = (false, false);
    let mut expect_continue = false;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                asked_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if header.name.eq_ignore_ascii_case("expect") {
            expect_continue |= header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue");
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value =
                std::str::from_utf8(header.value.trim_ascii()).map_err(|_| HeadError::Malformed)?;
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HeadError::Malformed);
            }
            let value: u64 = value.parse().map_err(|_| HeadError::Malformed)?;
            if length.is_some_and(|previous| previous != value) {
                return Err(HeadError::Malformed);
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    let body = match (chunked, length) {
        (true, _) => Body::Chunked,
        (false, Some(0) | None) => Body::None,
        (false, Some(n)) => Body::Length(n),
    };
    let keep_alive = !close && (!http10 || asked_keep_alive);
    Ok(Some(Head {
        len,
        method,
        route,
        keep_alive,
        body,
        query,
        pool,
        expect_continue,
    }))
}

/// The route of a request target: origin form (`/fcgi-ping?x`) or absolute form
/// (`http://host/fcgi-ping`).
pub fn route(target: &str) -> Route {
    split_route(target).0
}

/// The route of a request target and the pool it names: `/fcgi-ping/NAME` is
/// `(Route::Ping, Some("NAME"))` (one path segment; the server decides whether it is a pool).
pub fn split_route(target: &str) -> (Route, Option<&str>) {
    let target = ["http://", "https://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme))
        .map(|rest| rest.find('/').and_then(|at| rest.get(at..)).unwrap_or("/"))
        .unwrap_or(target);
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let pooled = [
        ("/fcgi-ping/", Route::Ping),
        ("/fcgi-live/", Route::Live),
        ("/fcgi-status/", Route::Status),
    ];
    for (prefix, route) in pooled {
        if let Some(name) = path.strip_prefix(prefix) {
            return match name.contains('/') {
                true => (Route::NotFound, None),
                false => (route, Some(name)),
            };
        }
    }
    let route = match path {
        "/fcgi-ping" => Route::Ping,
        "/fcgi-live" => Route::Live,
        "/fcgi-status" => Route::Status,
        "/metrics" => Route::Metrics,
        "/health" | "/healthz" | "/" => Route::Health,
        _ => Route::NotFound,
    };
    (route, None)
}

/// The query string of a request target (without `?` and `#fragment`), or `""`.
pub fn query(target: &str) -> &str {
    target
        .split_once('?')
        .map(|(_, rest)| rest.split('#').next().unwrap_or_default())
        .unwrap_or_default()
}

/// The reason phrase of the statuses this program sends (and of any `FAIL_STATUS`).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        424 => "Failed Dependency",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ if status < 500 => "Client Error",
        _ => "Server Error",
    }
}

/// One response to write.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// Status code.
    pub status: u16,
    /// One-line text body.
    pub body: &'a str,
    /// Leave the body out (`HEAD`), keeping its `Content-Length`.
    pub head_only: bool,
    /// Announce that the connection closes after this response.
    pub close: bool,
}

/// Appends `response` to `out`: status line, fixed headers, body.
pub fn render(out: &mut Vec<u8>, response: Response<'_>) {
    render_typed(out, response, PLAIN_TEXT);
}

/// The content type of our one-line (and status page) answers.
pub const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// As [`render`], with another `Content-Type`.
pub fn render_typed(out: &mut Vec<u8>, response: Response<'_>, content_type: &str) {
    let Response {
        status,
        body,
        head_only,
        close,
    } = response;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
        reason_phrase(status),
        body.len()
    );
    if status == 405 {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    // Said either way: an HTTP/1.0 client keeps a connection only when told it may.
    out.extend_from_slice(if close {
        b"Connection: close\r\n"
    } else {
        b"Connection: keep-alive\r\n"
    });
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// A response whose bytes never change, rendered once in each of its four forms
/// (`GET`/`HEAD` × keep-alive/close).
#[derive(Debug, Clone)]
pub struct Canned {
    get_keep: Vec<u8>,
    get_close: Vec<u8>,
    head_keep: Vec<u8>,
    head_close: Vec<u8>,
}

impl Canned {
    /// Renders `status` with `body` in all four forms.
    pub fn new(status: u16, body: &str) -> Self {
        let form = |head_only, close| {
            let mut out = Vec::new();
            render(
                &mut out,
                Response {
                    status,
                    body,
                    head_only,
                    close,
                },
            );
            out
        };
        Self {
            get_keep: form(false, false),
            get_close: form(false, true),
            head_keep: form(true, false),
            head_close: form(true, true),
        }
    }

    /// The bytes of one form.
    pub fn bytes(&self, head_only: bool, close: bool) -> &[u8] {
        match (head_only, close) {
            (false, false) => &self.get_keep,
            (false, true) => &self.get_close,
            (true, false) => &self.head_keep,
            (true, true) => &self.head_close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn kube_probe_request() {
        let h = head("GET /fcgi-ping HTTP/1.1\r\nHost: 10.0.0.5:8080\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\nConnection: close\r\n\r\n");
        assert_eq!(
            (h.method, h.route, h.keep_alive, h.body),
            (Method::Get, Route::Ping, false, Body::None)
        );
    }

    #[test]
    fn routes() {
        assert_eq!(route("/fcgi-ping?verbose=1"), Route::Ping);
        assert_eq!(route("http://example/fcgi-ping"), Route::Ping);
        assert_eq!(route("http://example"), Route::Health);
        assert_eq!(route("/healthz"), Route::Health);
        assert_eq!(route("/health"), Route::Health);
        assert_eq!(route("/"), Route::Health);
        assert_eq!(split_route("/fcgi-ping/x?a=b"), (Route::Ping, Some("x")));
        assert_eq!(
            split_route("/fcgi-status/www"),
            (Route::Status, Some("www"))
        );
        assert_eq!(split_route("/fcgi-live/"), (Route::Live, Some("")));
        assert_eq!(split_route("/fcgi-ping"), (Route::Ping, None));
        assert_eq!(route("/fcgi-ping/x/y"), Route::NotFound);
        assert_eq!(route("/fcgi-pingx"), Route::NotFound);
        assert_eq!(route("/fcgi-live"), Route::Live);
        assert_eq!(route("*"), Route::NotFound);
    }

    #[test]
    fn the_status_route_keeps_its_query() {
        let h = head("GET /fcgi-status?max-listen-queue=10&min-idle-processes=1 HTTP/1.1\r\n\r\n");
        assert_eq!(h.route, Route::Status);
        assert_eq!(
            h.query.as_deref(),
            Some("max-listen-queue=10&min-idle-processes=1")
        );
        assert_eq!(head("GET /fcgi-ping?x=1 HTTP/1.1\r\n\r\n").query, None);
        assert_eq!(query("/fcgi-status#top"), "");
    }

    #[test]
    fn keep_alive_rules() {
        assert!(head("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: upgrade, close\r\n\r\n").keep_alive);
        // `close` wins wherever it appears, in one header or across several.
        assert!(!head("GET / HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nConnection: close, keep-alive\r\n\r\n").keep_alive);
        assert!(
            !head("GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n")
                .keep_alive
        );
    }

    #[test]
    fn expect_continue() {
        let h = head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
        assert!(h.expect_continue);
        assert!(!head("GET / HTTP/1.1\r\n\r\n").expect_continue);
    }

    #[test]
    fn bodies() {
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").body,
            Body::Length(5)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").body,
            Body::Chunked
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Err(HeadError::Malformed)
        );
    }

    #[test]
    fn pipelined_heads_report_their_length() {
        let two = b"GET /health HTTP/1.1\r\n\r\nGET /fcgi-ping HTTP/1.1\r\n\r\n";
        let first = parse_head(two).unwrap().unwrap();
        assert_eq!(first.route, Route::Health);
        assert_eq!(
            parse_head(&two[first.len..]).unwrap().unwrap().route,
            Route::Ping
        );
    }

    #[test]
    fn limits_and_garbage() {
        assert_eq!(
            parse_head(b"GET /fcgi-ping HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        );
        assert_eq!(parse_head(b""), Ok(None));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        let many: String = std::iter::once("GET / HTTP/1.1\r\n".to_owned())
            .chain((0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")))
            .chain(std::iter::once("\r\n".to_owned()))
            .collect();
        assert_eq!(parse_head(many.as_bytes()), Err(HeadError::TooLarge));
        assert_eq!(
            parse_head(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse_head(b"GET /a\x00b HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Malformed)
        );
    }

    #[test]
    fn renders_fixed_headers() {
        let mut out = Vec::new();
        render(
            &mut out,
            Response {
                status: 405,
                body: "method not allowed\n",
                head_only: false,
                close: true,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        for line in [
            "Content-Length: 19\r\n",
            "Cache-Control: no-store\r\n",
            "Allow: GET, HEAD\r\n",
            "Connection: close\r\n",
        ] {
            assert!(text.contains(line), "{line}");
        }
        assert!(text.ends_with("\r\n\r\nmethod not allowed\n"));

        let mut out = Vec::new();
        render(
            &mut out,
            Response {
                status: 200,
                body: "ok\n",
                head_only: true,
                close: false,
            },
        );
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("Content-Length: 3\r\n") && text.ends_with("\r\n\r\n"));
        assert_eq!(Canned::new(200, "ok\n").bytes(true, false), out);
    }
}
