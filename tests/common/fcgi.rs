//! FastCGI on the wire: record encoding/decoding, a tiny client (to check php-fpm directly) and fake
//! FastCGI peers that misbehave in one specific way each.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

pub const BEGIN_REQUEST: u8 = 1;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;

pub const ROLE_RESPONDER: u16 = 1;
pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const OVERLOADED: u8 = 2;
pub const UNKNOWN_ROLE: u8 = 3;

/// What php-fpm's ping page writes on stdout (headers, blank line, body).
pub const PHP_FPM_PING_STDOUT: &str = "Content-type: text/plain;charset=UTF-8\r\n\
    Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
    Cache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n\r\npong";

#[derive(Clone, Debug)]
pub struct Record {
    pub kind: u8,
    pub id: u16,
    pub content: Vec<u8>,
}

/// One record: header (version 1, type, id, length, padding to a multiple of 8, reserved) + content.
pub fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let length = u16::try_from(content.len()).expect("record content fits in a u16");
    let padding = (8 - content.len() % 8) % 8;
    let mut out = vec![1, kind];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.push(u8::try_from(padding).expect("padding < 8"));
    out.push(0);
    out.extend_from_slice(content);
    out.resize(out.len() + padding, 0);
    out
}

/// END_REQUEST with its 8-byte body: app status (u32 BE), protocol status, 3 reserved bytes.
pub fn end_request(id: u16, app_status: u32, protocol_status: u8) -> Vec<u8> {
    let mut body = app_status.to_be_bytes().to_vec();
    body.extend_from_slice(&[protocol_status, 0, 0, 0]);
    record(END_REQUEST, id, &body)
}

/// A complete, well-formed responder answer: STDOUT records, the empty STDOUT, END_REQUEST complete.
pub fn answer(id: u16, stdout: &str) -> Vec<u8> {
    let mut out: Vec<u8> = stdout
        .as_bytes()
        .chunks(usize::from(u16::MAX))
        .flat_map(|chunk| record(STDOUT, id, chunk))
        .collect();
    out.extend(record(STDOUT, id, &[]));
    out.extend(end_request(id, 0, REQUEST_COMPLETE));
    out
}

/// Name-value pairs with the FastCGI length encoding (1 byte below 128, else 4 bytes with the top bit).
pub fn encode_params(pairs: &[(&str, &str)]) -> Vec<u8> {
    fn length(out: &mut Vec<u8>, len: usize) {
        match u8::try_from(len) {
            Ok(short) if short < 128 => out.push(short),
            _ => out.extend_from_slice(
                &(u32::try_from(len).expect("param length") | 1 << 31).to_be_bytes(),
            ),
        }
    }
    let mut out = Vec::new();
    for (name, value) in pairs {
        length(&mut out, name.len());
        length(&mut out, value.len());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Inverse of [`encode_params`]; stops at the first malformed pair.
pub fn decode_params(mut bytes: &[u8]) -> Vec<(String, String)> {
    fn length(bytes: &mut &[u8]) -> Option<usize> {
        let first = *bytes.first()?;
        if first < 128 {
            *bytes = &bytes[1..];
            return Some(usize::from(first));
        }
        let four: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
        *bytes = &bytes[4..];
        usize::try_from(u32::from_be_bytes(four) & 0x7fff_ffff).ok()
    }
    let mut pairs = Vec::new();
    while let (Some(name_len), Some(value_len)) = (length(&mut bytes), length(&mut bytes)) {
        let (Some(name), Some(value)) = (
            bytes.get(..name_len),
            bytes.get(name_len..name_len + value_len),
        ) else {
            break;
        };
        pairs.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        bytes = &bytes[name_len + value_len..];
    }
    pairs
}

/// Reads one record (header, content, padding).
pub fn read_record(reader: &mut impl Read) -> io::Result<Record> {
    let mut header = [0u8; 8];
    reader.read_exact(&mut header)?;
    if header[0] != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("FastCGI version {}", header[0]),
        ));
    }
    let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let mut content = vec![0; length + usize::from(header[6])];
    reader.read_exact(&mut content)?;
    content.truncate(length);
    Ok(Record {
        kind: header[1],
        id: u16::from_be_bytes([header[2], header[3]]),
        content,
    })
}

/// A GET request for `path` the way a web server would send it: BEGIN_REQUEST, PARAMS, STDIN.
pub fn request_bytes(path: &str) -> Vec<u8> {
    request_with_query(path, "")
}

/// A GET request for the script `path` with `query` as its QUERY_STRING (`ms=2000`).
pub fn request_with_query(path: &str, query: &str) -> Vec<u8> {
    let mut begin = ROLE_RESPONDER.to_be_bytes().to_vec();
    begin.extend_from_slice(&[0; 6]);
    let params = encode_params(&[
        ("SCRIPT_FILENAME", path),
        ("SCRIPT_NAME", path),
        ("REQUEST_URI", path),
        ("DOCUMENT_URI", path),
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", query),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
    ]);
    [
        record(BEGIN_REQUEST, 1, &begin),
        record(PARAMS, 1, &params),
        record(PARAMS, 1, &[]),
        record(STDIN, 1, &[]),
    ]
    .concat()
}

/// What a FastCGI server answered: stdout, and the END_REQUEST protocol status.
pub struct Answer {
    pub stdout: String,
    pub protocol_status: u8,
}

/// Speaks FastCGI directly (no tool involved): sends a GET for `path` and reads up to END_REQUEST.
pub fn fcgi_get(stream: impl Read + Write, path: &str) -> io::Result<Answer> {
    fcgi_get_query(stream, path, "")
}

/// Like [`fcgi_get`], with `query` as the QUERY_STRING.
pub fn fcgi_get_query(
    mut stream: impl Read + Write,
    path: &str,
    query: &str,
) -> io::Result<Answer> {
    stream.write_all(&request_with_query(path, query))?;
    let mut stdout = Vec::new();
    loop {
        let record = read_record(&mut stream)?;
        match record.kind {
            STDOUT => stdout.extend_from_slice(&record.content),
            END_REQUEST => {
                let protocol_status = *record.content.get(4).unwrap_or(&u8::MAX);
                return Ok(Answer {
                    stdout: String::from_utf8_lossy(&stdout).into_owned(),
                    protocol_status,
                });
            }
            _ => {}
        }
    }
}

/// The records of one request a fake peer received, up to and including the empty STDIN record.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub records: Vec<Record>,
}

impl Request {
    /// All PARAMS content concatenated and decoded.
    pub fn params(&self) -> Vec<(String, String)> {
        let bytes: Vec<u8> = self
            .records
            .iter()
            .filter(|r| r.kind == PARAMS)
            .flat_map(|r| r.content.clone())
            .collect();
        decode_params(&bytes)
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// Whether the request ended properly with an empty STDIN record.
    pub fn complete(&self) -> bool {
        self.records
            .last()
            .is_some_and(|r| r.kind == STDIN && r.content.is_empty())
    }
}

/// Reads records until the empty STDIN record; on a malformed record, EOF or a 5 s silence, returns what
/// it has so far.
fn read_request(stream: &mut TcpStream) -> Request {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Request::default();
    while let Ok(record) = read_record(stream) {
        request.records.push(record);
        if request.complete() {
            break;
        }
    }
    request
}

/// What a fake peer does after it has read the request.
#[derive(Clone, Debug)]
pub enum Behavior {
    /// Writes `bytes` (at once, or one byte per `drip` interval), then holds the socket open until the
    /// client closes it (`close: false`) or closes it at once (`close: true`).
    Reply {
        bytes: Vec<u8>,
        drip: Option<Duration>,
        close: bool,
    },
    /// Writes valid STDOUT records without end until the client goes away.
    EndlessStdout,
    /// Writes empty STDOUT records (a header and no content) without end until the client goes
    /// away: the socket is always readable, and no content cap ever fills.
    EndlessEmptyRecords,
    /// Waits this long, then answers like php-fpm's ping page.
    Late(Duration),
}

impl Behavior {
    /// Writes `bytes` at once and holds the connection open: the answer is all the client can go by.
    pub fn hold(bytes: Vec<u8>) -> Self {
        Self::Reply {
            bytes,
            drip: None,
            close: false,
        }
    }

    /// A complete answer with this stdout.
    pub fn stdout(stdout: &str) -> Self {
        Self::hold(answer(1, stdout))
    }

    /// Answers like php-fpm's ping page.
    pub fn healthy() -> Self {
        Self::stdout(PHP_FPM_PING_STDOUT)
    }

    /// Bytes that are not FastCGI (version byte 'H').
    pub fn garbage() -> Self {
        Self::hold(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n".to_vec())
    }

    /// A complete answer, but for request id 2.
    pub fn wrong_request_id() -> Self {
        Self::hold(answer(2, PHP_FPM_PING_STDOUT))
    }

    /// An END_REQUEST alone, with this protocol status.
    pub fn end_request_status(protocol_status: u8) -> Self {
        Self::hold(end_request(1, 0, protocol_status))
    }

    /// An END_REQUEST whose content length is 0 instead of 8.
    pub fn short_end_request() -> Self {
        Self::hold(record(END_REQUEST, 1, &[]))
    }

    /// A record type a server never sends to a client (BEGIN_REQUEST).
    pub fn unexpected_record_type() -> Self {
        Self::hold(record(BEGIN_REQUEST, 1, &[0, 1, 0, 0, 0, 0, 0, 0]))
    }

    /// Reads the request and never answers.
    pub fn silent() -> Self {
        Self::hold(Vec::new())
    }

    /// Closes the connection right after reading the request.
    pub fn close_after_request() -> Self {
        Self::Reply {
            bytes: Vec::new(),
            drip: None,
            close: true,
        }
    }

    /// Sends some stdout, then closes without END_REQUEST.
    pub fn partial_then_close() -> Self {
        Self::Reply {
            bytes: record(STDOUT, 1, PHP_FPM_PING_STDOUT.as_bytes()),
            drip: None,
            close: true,
        }
    }

    /// A valid healthy answer, one byte every 100 ms.
    pub fn drip() -> Self {
        Self::Reply {
            bytes: answer(1, PHP_FPM_PING_STDOUT),
            drip: Some(Duration::from_millis(100)),
            close: false,
        }
    }

    /// Runs this behaviour on a connection whose request has been read. Errors mean the client left.
    fn perform(&self, stream: &mut TcpStream) -> io::Result<()> {
        match self {
            Self::Reply {
                bytes,
                drip: None,
                close,
            } => {
                stream.write_all(bytes)?;
                finish(stream, *close)
            }
            Self::Reply {
                bytes,
                drip: Some(interval),
                close,
            } => {
                for byte in bytes {
                    thread::sleep(*interval);
                    stream.write_all(&[*byte])?;
                }
                finish(stream, *close)
            }
            Self::Late(delay) => {
                thread::sleep(*delay);
                stream.write_all(&answer(1, PHP_FPM_PING_STDOUT))?;
                finish(stream, false)
            }
            Self::EndlessEmptyRecords => {
                let chunk = record(STDOUT, 1, &[]).repeat(8192);
                loop {
                    stream.write_all(&chunk)?;
                }
            }
            Self::EndlessStdout => {
                stream.write_all(&record(STDOUT, 1, b"Content-Type: text/plain\r\n\r\n"))?;
                let chunk = record(STDOUT, 1, &[b'x'; 8192]);
                loop {
                    stream.write_all(&chunk)?;
                }
            }
        }
    }
}

/// Closes now, or waits (up to a minute) until the client closes.
fn finish(stream: &mut TcpStream, close: bool) -> io::Result<()> {
    if close {
        return stream.shutdown(std::net::Shutdown::Both);
    }
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink)? > 0 {}
    Ok(())
}

/// A fake FastCGI server on 127.0.0.1: each accepted connection gets its own thread, reads the request and
/// then runs the current [`Behavior`] (changeable with [`FakePeer::set`]).
pub struct FakePeer {
    addr: SocketAddr,
    behavior: Arc<Mutex<Behavior>>,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl FakePeer {
    pub fn start(behavior: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake peer");
        let peer = Self {
            addr: listener.local_addr().expect("fake peer addr"),
            behavior: Arc::new(Mutex::new(behavior)),
            requests: Arc::default(),
            stop: Arc::default(),
        };
        let (behavior, requests, stop) = (
            peer.behavior.clone(),
            peer.requests.clone(),
            peer.stop.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let (behavior, requests) = (behavior.clone(), requests.clone());
                thread::spawn(move || {
                    let request = read_request(&mut stream);
                    requests.lock().expect("requests lock").push(request);
                    let current = behavior.lock().expect("behavior lock").clone();
                    let _ = current.perform(&mut stream);
                });
            }
        });
        peer
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Changes what the peer does for the next connections.
    pub fn set(&self, behavior: Behavior) {
        *self.behavior.lock().expect("behavior lock") = behavior;
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests lock").clone()
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}
