//! A tiny raw HTTP/1.1 client over std's TcpStream: exact bytes out, one parsed response at a time in,
//! keep-alive and pipelining included.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a read may block before the test fails: generous, the machine is busy.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether the server announced it closes the connection after this response.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// Asserts the response is `status` with a body starting with `reason` (the failure reason word).
    pub fn assert_failure(&self, status: u16, reason: &str) {
        assert_eq!(
            self.status, status,
            "status for an expected `{reason}` failure: {self:?}"
        );
        assert!(
            self.body.starts_with(&format!("{reason}:")),
            "body should start with `{reason}:`, got {:?}",
            self.body
        );
        assert!(
            self.body.ends_with('\n') && self.body.lines().count() == 1,
            "one-line body: {:?}",
            self.body
        );
    }

    /// Asserts a healthy answer: 200 with body `ok\n`.
    /// A 200 whatever the body (for `/fcgi-status`, whose body lists the fields).
    pub fn assert_ok_status(&self) {
        assert_eq!(self.status, 200, "expected 200: {self:?}");
    }

    pub fn assert_ok(&self) {
        assert_eq!(
            (self.status, self.body.as_str()),
            (200, "ok\n"),
            "expected a healthy answer: {self:?}"
        );
    }
}

/// One client connection; bytes received beyond the current response stay buffered for the next one.
pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .unwrap_or_else(|error| panic!("connect to the tool at {addr}: {error}"));
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set read timeout");
        stream.set_nodelay(true).expect("set nodelay");
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    pub fn local_port(&self) -> u16 {
        self.stream.local_addr().expect("local addr").port()
    }

    /// Writes raw bytes; errors are returned (the server may already have closed).
    pub fn try_send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stream.write_all(raw)
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.try_send(raw).expect("send to the tool");
    }

    /// Sends `METHOD path HTTP/1.1` with a Host header and reads its response.
    pub fn request(&mut self, method: &str, path: &str) -> Response {
        self.send(request_text(method, path, &[]).as_bytes());
        self.read_response(method)
    }

    /// Reads one response to a request made with `method` (a HEAD response has no body); panics on error.
    pub fn read_response(&mut self, method: &str) -> Response {
        self.try_read_response(method)
            .unwrap_or_else(|error| panic!("reading a response to {method}: {error}"))
    }

    pub fn try_read_response(&mut self, method: &str) -> io::Result<Response> {
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        if !status_line.starts_with("HTTP/1.") {
            return Err(invalid(format!("bad status line {status_line:?}")));
        }
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        let mut response = Response {
            status,
            headers,
            body: String::new(),
        };
        let body_length = if method == "HEAD" {
            0
        } else {
            response.content_length().unwrap_or(0)
        };
        while self.buffer.len() < head_end + body_length {
            self.fill()?;
        }
        response.body =
            String::from_utf8_lossy(&self.buffer[head_end..head_end + body_length]).into_owned();
        self.buffer.drain(..head_end + body_length);
        Ok(response)
    }

    /// Whether the server closes this connection (EOF or reset) within `within`, without sending more.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let closed = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.buffer.is_empty() {
                break false;
            }
            self.stream
                .set_read_timeout(Some(left))
                .expect("set read timeout");
            match self.fill() {
                Ok(()) => {}
                Err(error) if is_timeout(&error) => break false,
                Err(_) => break true,
            }
        };
        self.stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set read timeout");
        closed
    }

    /// Bytes received but not consumed by a parsed response.
    pub fn unread(&self) -> &[u8] {
        &self.buffer
    }

    /// Whether anything arrived without blocking (for "not answered yet" checks).
    pub fn has_pending_data(&mut self) -> bool {
        self.stream.set_nonblocking(true).expect("set nonblocking");
        let mut probe = [0u8; 1];
        let pending = matches!(self.stream.peek(&mut probe), Ok(n) if n > 0);
        self.stream.set_nonblocking(false).expect("set blocking");
        pending || !self.buffer.is_empty()
    }

    /// Reads more bytes into the buffer; EOF is an `UnexpectedEof` error.
    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let read = loop {
            match self.stream.read(&mut chunk) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        match read {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            )),
            n => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }
}

/// `METHOD path HTTP/1.1` with a Host header and `extra` header lines, ending with the blank line.
pub fn request_text(method: &str, path: &str, extra: &[&str]) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    Client::connect(addr).request("GET", path)
}

/// One GET on a fresh connection, with how long it took.
pub fn timed_get(addr: SocketAddr, path: &str) -> (Response, Duration) {
    let started = Instant::now();
    let response = get(addr, path);
    (response, started.elapsed())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
