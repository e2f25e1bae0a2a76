//! The FastCGI wire: the fixed request we send and a bounded decoder for the records we get back.
//!
//! The request's parameters and the fix-up of its end are here; `fastcgi-client` renders it once
//! at start, into memory (`probe::request`, which also logs it), so a probe costs one `write` of
//! ready bytes. The answer is decoded here rather than by `fastcgi-client`'s reader,
//! which collects stdout without a bound, panics on an `END_REQUEST` record shorter than 8 bytes
//! and (in its streaming form) does not check the request id or tell a clean end from a closed
//! socket. This decoder is pure and never panics: every malformed input becomes a
//! [`DecodeError`], stdout and stderr are capped, and the buffer holds at most one record plus
//! one read.

use std::borrow::Cow;
use std::fmt;

use fastcgi_client::Params;

use crate::limits::{
    FCGI_READ_CHUNK, LOGGED_STDERR_BYTES, MAX_FCGI_OVERHEAD, MAX_FCGI_RECORDS, MAX_FCGI_STDERR,
    MAX_FCGI_STDOUT,
};

/// The request id `fastcgi-client` uses (as nginx does).
pub const REQUEST_ID: u16 = 1;
const VERSION_1: u8 = 1;
const HEADER_LEN: usize = 8;
const END_REQUEST: u8 = 3;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;

/// The CGI parameters of a GET of `path` with `query` (without `?`), for the request the prober
/// renders once at start (BEGIN_REQUEST, PARAMS, empty STDIN, as a RESPONDER without
/// `FCGI_KEEP_CONN`).
///
/// Nothing from an HTTP client goes in here: the request is fixed by configuration.
pub fn request_params<'a>(path: &'a str, query: &'a str) -> Params<'a> {
    let uri: Cow<'a, str> = if query.is_empty() {
        path.into()
    } else {
        format!("{path}?{query}").into()
    };
    Params::default()
        .server_software(concat!("fastcgi-healthcheck/", env!("CARGO_PKG_VERSION")))
        .gateway_interface("CGI/1.1")
        .request_method("GET")
        .script_name(path)
        .script_filename(path)
        .document_uri(path)
        .request_uri(uri)
        .query_string(query)
        .custom("CONTENT_LENGTH", "0")
}

/// Ends the request's STDIN once: `fastcgi-client` 0.12 ends it twice (an empty record, then
/// another). A record after the end of a stream is a protocol violation, and bytes the server
/// never reads can make its close a reset that races our read of the answer.
pub fn end_stdin_once(request: &mut Vec<u8>) {
    while request.len() >= 2 * HEADER_LEN
        && request
            .rchunks(HEADER_LEN)
            .take(2)
            .all(|record| record == EMPTY_STDIN)
    {
        request.truncate(request.len().saturating_sub(HEADER_LEN));
    }
}

/// An empty STDIN record for [`REQUEST_ID`]: the end of the request body.
const EMPTY_STDIN: [u8; HEADER_LEN] = [VERSION_1, 5, 0, 1, 0, 0, 0, 0];

/// A complete FastCGI answer: the `END_REQUEST` record and what came before it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// Everything the peer wrote to stdout (at most [`MAX_FCGI_STDOUT`] bytes).
    pub stdout: Vec<u8>,
    /// The start of what the peer wrote to stderr (at most [`LOGGED_STDERR_BYTES`] bytes).
    pub stderr: Vec<u8>,
    /// How many stderr bytes the peer wrote in all.
    pub stderr_len: usize,
    /// The application status of `END_REQUEST`.
    pub app_status: u32,
    /// The protocol status of `END_REQUEST` (0 = REQUEST_COMPLETE).
    pub protocol_status: u8,
    /// Whether stdout went past the cap of a truncating [`Decoder`] (then `stdout` holds the
    /// first cap bytes, and the rest was read and dropped).
    pub stdout_truncated: bool,
}

/// The protocol statuses of `END_REQUEST`.
pub mod protocol_status {
    /// The request was served.
    pub const REQUEST_COMPLETE: u8 = 0;
    /// The server cannot multiplex connections.
    pub const CANT_MPX_CONN: u8 = 1;
    /// The server is out of a resource (workers, memory).
    pub const OVERLOADED: u8 = 2;
    /// The server does not know the requested role.
    pub const UNKNOWN_ROLE: u8 = 3;
}

/// What is wrong with the records the peer sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// A record header with a version other than 1 (the peer is not speaking FastCGI).
    BadVersion(u8),
    /// A record for another request id.
    WrongRequestId(u16),
    /// A record type a responder does not send to a client.
    UnexpectedType(u8),
    /// An `END_REQUEST` record shorter than its 8-byte body.
    ShortEndRequest(u16),
    /// Stdout beyond [`MAX_FCGI_STDOUT`].
    StdoutTooLarge,
    /// Stderr beyond [`MAX_FCGI_STDERR`].
    StderrTooLarge,
    /// More than [`MAX_FCGI_RECORDS`] records, or more than the content caps plus
    /// [`MAX_FCGI_OVERHEAD`] bytes in all (record headers, padding, empty records); for a
    /// truncating decoder, bounds scaled with what it may read (see [`Decoder::truncating`]).
    AnswerTooLarge,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadVersion(v) => write!(
                f,
                "record version {v}, expected 1 (is it a FastCGI server?)"
            ),
            DecodeError::WrongRequestId(id) => {
                write!(f, "record for request id {id}, expected {REQUEST_ID}")
            }
            DecodeError::UnexpectedType(t) => write!(f, "unexpected record type {t}"),
            DecodeError::ShortEndRequest(len) => {
                write!(f, "END_REQUEST record of {len} bytes, expected 8")
            }
            DecodeError::StdoutTooLarge => write!(f, "stdout larger than {MAX_FCGI_STDOUT} bytes"),
            DecodeError::StderrTooLarge => write!(f, "stderr larger than {MAX_FCGI_STDERR} bytes"),
            DecodeError::AnswerTooLarge => write!(
                f,
                "too many records or bytes in all (a ping's answer: at most {MAX_FCGI_RECORDS} \
                 records, {MAX_ANSWER_BYTES} bytes)"
            ),
        }
    }
}

/// Most bytes a whole answer may take on the wire: the content caps, plus record headers and
/// padding. Content alone does not bound the answer: a peer streaming empty records would cost
/// nothing against the caps, and kept the probe reading (and the one thread decoding) until its
/// deadline.
pub const MAX_ANSWER_BYTES: usize = MAX_FCGI_STDOUT + MAX_FCGI_STDERR + MAX_FCGI_OVERHEAD;

/// An incremental, bounded decoder of the records answering [`REQUEST_ID`].
///
/// Bounds: stdout and stderr content ([`MAX_FCGI_STDOUT`], [`MAX_FCGI_STDERR`]), the number of
/// records ([`MAX_FCGI_RECORDS`]) and the bytes received in all ([`MAX_ANSWER_BYTES`]); a
/// truncating decoder scales the last two with what it may read and drop.
#[derive(Debug)]
pub struct Decoder {
    /// Received bytes not yet decoded (`..filled`), then room for the next read: zeroed once
    /// when it grows, not at every read, and handed back by [`Decoder::into_buffer`] for the
    /// next answer.
    pending: Vec<u8>,
    filled: usize,
    answer: Answer,
    stdout_len: usize,
    received: usize,
    /// Most stdout bytes kept.
    stdout_cap: usize,
    /// Past `stdout_cap`: keep reading and mark the answer truncated (`true`), or fail with
    /// [`DecodeError::StdoutTooLarge`] (`false`).
    truncate: bool,
    records: usize,
    /// Most records, and most bytes received in all (headers, padding, dropped stdout).
    max_records: usize,
    max_received: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// How much stdout a truncating decoder reads (and drops) past its cap, as a multiple of the
/// cap, before the answer is too large: a page a little over the cap is still read to its end,
/// a peer that never stops is not.
const TRUNCATED_READ_FACTOR: usize = 4;

impl Decoder {
    /// A decoder that has seen nothing; stdout beyond [`MAX_FCGI_STDOUT`] is an error.
    pub fn new() -> Self {
        Self {
            pending: Vec::new(),
            filled: 0,
            answer: Answer::default(),
            stdout_len: 0,
            received: 0,
            stdout_cap: MAX_FCGI_STDOUT,
            truncate: false,
            records: 0,
            max_records: MAX_FCGI_RECORDS,
            max_received: MAX_ANSWER_BYTES,
        }
    }

    /// A decoder that keeps the first `cap` bytes of stdout and drops the rest, marking the
    /// answer [`Answer::stdout_truncated`] (php-fpm's full status page: its summary comes first).
    /// The peer still cannot grow our memory: dropped bytes are not kept, and the caller's
    /// deadline bounds the time.
    ///
    /// It reads at most [`TRUNCATED_READ_FACTOR`] times `cap` of stdout, dropping what is past
    /// `cap`; more is [`DecodeError::AnswerTooLarge`]. Its record and byte bounds grow in the
    /// same proportion as the stdout it may read.
    pub fn truncating(cap: usize) -> Self {
        let readable = cap.saturating_mul(TRUNCATED_READ_FACTOR);
        let scale = (readable / MAX_FCGI_STDOUT).max(1);
        Self {
            stdout_cap: cap,
            truncate: true,
            max_records: MAX_FCGI_RECORDS.saturating_mul(scale),
            max_received: readable
                .saturating_add(MAX_FCGI_STDERR)
                .saturating_add(MAX_FCGI_OVERHEAD.saturating_mul(scale)),
            ..Self::new()
        }
    }

    /// This decoder, reading into `buffer` (the storage of an earlier decoder, from
    /// [`Decoder::into_buffer`]): no allocation and no zeroing when it is large enough.
    pub fn with_buffer(mut self, buffer: Vec<u8>) -> Self {
        self.pending = buffer;
        self.filled = 0;
        self
    }

    /// The storage, for the next decoder.
    pub fn into_buffer(self) -> Vec<u8> {
        self.pending
    }

    /// This decoder, keeping the answer's stdout in `stdout` (an earlier answer's, emptied
    /// here): no allocation for a stdout that fits its capacity. The caps are unchanged.
    pub fn with_stdout(mut self, mut stdout: Vec<u8>) -> Self {
        stdout.clear();
        self.answer.stdout = stdout;
        self
    }

    /// The stdout storage of an answer not (yet) complete, for the next decoder: empty once
    /// the answer was handed out (its stdout went with it).
    pub fn take_stdout(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.answer.stdout)
    }

    /// How many bytes the peer has sent so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// Room for the next read: a slice after the bytes not yet decoded, to be followed by
    /// [`Decoder::commit`] with the number of bytes read into it.
    pub fn spare(&mut self) -> &mut [u8] {
        let end = self.filled.saturating_add(FCGI_READ_CHUNK);
        if self.pending.len() < end {
            self.pending.resize(end, 0);
        }
        self.pending.get_mut(self.filled..end).unwrap_or_default()
    }

    /// Takes `read` bytes written into [`Decoder::spare`] and decodes what is complete.
    /// `Ok(Some(answer))` once `END_REQUEST` has arrived.
    pub fn commit(&mut self, read: usize) -> Result<Option<Answer>, DecodeError> {
        self.filled = self.filled.saturating_add(read).min(self.pending.len());
        self.received = self.received.saturating_add(read);
        if self.received > self.max_received {
            return Err(DecodeError::AnswerTooLarge);
        }
        self.decode()
    }

    /// Takes `bytes` (from anywhere) and decodes what is complete; as [`Decoder::commit`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Answer>, DecodeError> {
        self.pending.truncate(self.filled);
        self.pending.extend_from_slice(bytes);
        self.filled = self.pending.len();
        self.received = self.received.saturating_add(bytes.len());
        if self.received > self.max_received {
            return Err(DecodeError::AnswerTooLarge);
        }
        self.decode()
    }

    fn decode(&mut self) -> Result<Option<Answer>, DecodeError> {
        let mut offset = 0usize;
        let filled = self.filled.min(self.pending.len());
        let result = loop {
            let rest = self.pending.get(offset..filled).unwrap_or_default();
            let Some(header) = rest.get(..HEADER_LEN) else {
                break Ok(None);
            };
            let [version, kind, id_hi, id_lo, len_hi, len_lo, padding, _reserved] = *header else {
                break Ok(None);
            };
            if version != VERSION_1 {
                break Err(DecodeError::BadVersion(version));
            }
            let id = u16::from_be_bytes([id_hi, id_lo]);
            if id != REQUEST_ID {
                break Err(DecodeError::WrongRequestId(id));
            }
            if !matches!(kind, STDOUT | STDERR | END_REQUEST) {
                break Err(DecodeError::UnexpectedType(kind));
            }
            let content_len = u16::from_be_bytes([len_hi, len_lo]);
            if kind == END_REQUEST && content_len < 8 {
                break Err(DecodeError::ShortEndRequest(content_len));
            }
            let content_end = HEADER_LEN.saturating_add(usize::from(content_len));
            let record_len = content_end.saturating_add(usize::from(padding));
            let (Some(record), Some(next)) =
                (rest.get(..record_len), offset.checked_add(record_len))
            else {
                break Ok(None);
            };
            let content = record.get(HEADER_LEN..content_end).unwrap_or_default();
            offset = next;
            self.records = self.records.saturating_add(1);
            if self.records > self.max_records {
                break Err(DecodeError::AnswerTooLarge);
            }
            match kind {
                STDOUT => {
                    self.stdout_len = self.stdout_len.saturating_add(content.len());
                    if self.stdout_len > self.stdout_cap {
                        if !self.truncate {
                            break Err(DecodeError::StdoutTooLarge);
                        }
                        self.answer.stdout_truncated = true;
                        let room = self.stdout_cap.saturating_sub(self.answer.stdout.len());
                        self.answer.stdout.extend_from_slice(
                            content.get(..room.min(content.len())).unwrap_or_default(),
                        );
                    } else {
                        self.answer.stdout.extend_from_slice(content);
                    }
                }
                STDERR => {
                    self.answer.stderr_len = self.answer.stderr_len.saturating_add(content.len());
                    if self.answer.stderr_len > MAX_FCGI_STDERR {
                        break Err(DecodeError::StderrTooLarge);
                    }
                    let room = LOGGED_STDERR_BYTES.saturating_sub(self.answer.stderr.len());
                    self.answer.stderr.extend_from_slice(
                        content.get(..room.min(content.len())).unwrap_or_default(),
                    );
                }
                _ => {
                    let [a, b, c, d, status, ..] = *content else {
                        break Err(DecodeError::ShortEndRequest(content_len));
                    };
                    self.answer.app_status = u32::from_be_bytes([a, b, c, d]);
                    self.answer.protocol_status = status;
                    break Ok(Some(std::mem::take(&mut self.answer)));
                }
            }
        };
        // What is left of the bytes read moves to the front; the room after it stays.
        let offset = offset.min(filled);
        self.pending.copy_within(offset..filled, 0);
        self.filled = filled.saturating_sub(offset);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
        let mut out = vec![1, kind];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        out.extend_from_slice(&[padding, 0]);
        out.extend_from_slice(content);
        out.extend(std::iter::repeat_n(0, padding as usize));
        out
    }

    fn end(status: u8) -> Vec<u8> {
        record(END_REQUEST, 1, &[0, 0, 0, 7, status, 0, 0, 0], 0)
    }

    const PHP_FPM_PONG: &[u8] = b"Content-type: text/plain;charset=UTF-8\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\nCache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n\r\npong";

    fn php_fpm_answer() -> Vec<u8> {
        let mut bytes = record(STDOUT, 1, PHP_FPM_PONG, 6);
        bytes.extend(end(0));
        bytes
    }

    #[test]
    fn decodes_php_fpm_answer_whole_and_byte_by_byte() {
        let bytes = php_fpm_answer();
        let answer = Decoder::new().feed(&bytes).unwrap().unwrap();
        assert_eq!(answer.stdout, PHP_FPM_PONG);
        assert_eq!((answer.app_status, answer.protocol_status), (7, 0));

        let mut decoder = Decoder::new();
        let (last, init) = bytes.split_last().unwrap();
        for byte in init {
            assert_eq!(decoder.feed(&[*byte]), Ok(None));
        }
        assert_eq!(
            decoder.feed(&[*last]).unwrap().unwrap().stdout,
            PHP_FPM_PONG
        );
        assert_eq!(decoder.received(), bytes.len());
    }

    #[test]
    fn spare_and_commit_decode_like_feed() {
        let bytes = php_fpm_answer();
        let mut decoder = Decoder::new();
        let mut result = Ok(None);
        for chunk in bytes.chunks(5) {
            decoder.spare()[..chunk.len()].copy_from_slice(chunk);
            result = decoder.commit(chunk.len());
        }
        assert_eq!(result.unwrap().unwrap().stdout, PHP_FPM_PONG);
    }

    #[test]
    fn a_recycled_stdout_starts_empty_and_keeps_its_storage() {
        let mut stdout = Vec::with_capacity(PHP_FPM_PONG.len());
        stdout.extend_from_slice(b"left over from the last answer");
        let storage = stdout.as_ptr();
        let answer = Decoder::new()
            .with_stdout(stdout)
            .feed(&php_fpm_answer())
            .unwrap()
            .unwrap();
        assert_eq!(answer.stdout, PHP_FPM_PONG);
        assert_eq!(answer.stdout.as_ptr(), storage);
        // An answer cut short leaves its storage in the decoder, for the next one.
        let mut decoder = Decoder::new().with_stdout(answer.stdout);
        assert_eq!(decoder.feed(&record(STDOUT, 1, b"pong", 0)), Ok(None));
        let left = decoder.take_stdout();
        assert_eq!((left.as_slice(), left.as_ptr()), (&b"pong"[..], storage));
    }

    #[test]
    fn stderr_is_kept_truncated_and_does_not_fail() {
        let mut bytes = record(STDERR, 1, &[b'e'; 2000], 0);
        bytes.extend(record(STDOUT, 1, b"\r\n\r\npong", 0));
        bytes.extend(end(0));
        let answer = Decoder::new().feed(&bytes).unwrap().unwrap();
        assert_eq!(answer.stderr.len(), LOGGED_STDERR_BYTES);
        assert_eq!(answer.stderr_len, 2000);
    }

    #[test]
    fn protocol_faults_are_errors() {
        let mut decoder = Decoder::new();
        assert_eq!(
            decoder.feed(b"HTTP/1.1 400 Bad Request\r\n"),
            Err(DecodeError::BadVersion(b'H'))
        );
        assert_eq!(
            Decoder::new().feed(&record(STDOUT, 2, b"x", 0)),
            Err(DecodeError::WrongRequestId(2))
        );
        assert_eq!(
            Decoder::new().feed(&record(9, 1, b"", 0)),
            Err(DecodeError::UnexpectedType(9))
        );
        assert_eq!(
            Decoder::new().feed(&record(END_REQUEST, 1, b"", 0)),
            Err(DecodeError::ShortEndRequest(0))
        );
        assert_eq!(
            Decoder::new().feed(&record(END_REQUEST, 1, &[0; 5], 0)),
            Err(DecodeError::ShortEndRequest(5))
        );
    }

    #[test]
    fn stdout_is_capped() {
        let mut decoder = Decoder::new();
        let chunk = record(STDOUT, 1, &[b'x'; 65535], 1);
        assert_eq!(decoder.feed(&chunk), Ok(None));
        assert_eq!(decoder.feed(&chunk), Err(DecodeError::StdoutTooLarge));
    }

    #[test]
    fn a_truncating_decoder_keeps_the_start_and_reads_on() {
        let mut decoder = Decoder::truncating(100_000);
        let chunk = record(STDOUT, 1, &[b'x'; 65535], 1);
        assert_eq!(decoder.feed(&chunk), Ok(None));
        assert_eq!(decoder.feed(&chunk), Ok(None));
        assert_eq!(decoder.feed(&chunk), Ok(None));
        let answer = decoder.feed(&end(0)).unwrap().unwrap();
        assert!(answer.stdout_truncated);
        assert_eq!(answer.stdout.len(), 100_000);
        let small = Decoder::truncating(100_000)
            .feed(&php_fpm_answer())
            .unwrap()
            .unwrap();
        assert!(!small.stdout_truncated);
        assert_eq!(small.stdout, PHP_FPM_PONG);
    }

    #[test]
    fn a_truncating_decoder_still_ends_a_peer_that_never_stops() {
        let cap = 100_000;
        let mut decoder = Decoder::truncating(cap);
        let chunk = record(STDOUT, 1, &[b'x'; 65535], 1);
        let mut result = Ok(None);
        let mut fed = 0usize;
        while result == Ok(None) && fed < 1000 {
            result = decoder.feed(&chunk);
            fed += 1;
        }
        assert_eq!(result, Err(DecodeError::AnswerTooLarge));
        assert!(
            decoder.received()
                <= cap * TRUNCATED_READ_FACTOR
                    + MAX_FCGI_STDERR
                    + 2 * 65544
                    + MAX_FCGI_OVERHEAD * 6
        );
        // Empty records: the scaled record bound.
        let mut decoder = Decoder::truncating(cap);
        let empty = record(STDOUT, 1, b"", 0);
        let mut result = Ok(None);
        while result == Ok(None) && decoder.records <= decoder.max_records {
            result = decoder.feed(&empty);
        }
        assert_eq!(result, Err(DecodeError::AnswerTooLarge));
    }

    #[test]
    fn empty_records_are_bounded_by_count() {
        let mut decoder = Decoder::new();
        let empty = record(STDOUT, 1, b"", 0);
        let mut result = Ok(None);
        let mut fed = 0usize;
        while result == Ok(None) && fed <= MAX_FCGI_RECORDS {
            result = decoder.feed(&empty);
            fed += 1;
        }
        assert_eq!(result, Err(DecodeError::AnswerTooLarge));
        assert_eq!(fed, MAX_FCGI_RECORDS + 1);
    }

    #[test]
    fn padding_is_bounded_by_bytes() {
        // Few records, each mostly padding: the byte bound ends it before the record bound.
        let mut decoder = Decoder::new();
        let padded = record(STDOUT, 1, b"", 255);
        let mut result = Ok(None);
        while result == Ok(None) && decoder.received() <= MAX_ANSWER_BYTES {
            result = decoder.feed(&padded);
        }
        assert_eq!(result, Err(DecodeError::AnswerTooLarge));
        assert!(decoder.records <= MAX_FCGI_RECORDS);
    }

    #[test]
    fn an_answer_at_every_content_cap_still_fits() {
        // Full stdout and stderr in php-fpm's record size, padded to 8 bytes: within the bounds.
        let mut bytes = Vec::new();
        for _ in 0..MAX_FCGI_STDOUT / 8184 {
            bytes.extend(record(STDOUT, 1, &[b'x'; 8184], 0));
        }
        for _ in 0..MAX_FCGI_STDERR / 8184 {
            bytes.extend(record(STDERR, 1, &[b'e'; 8184], 0));
        }
        bytes.extend(record(STDOUT, 1, b"\r\n\r\n", 0));
        bytes.extend(end(0));
        assert!(Decoder::new().feed(&bytes).unwrap().is_some());
    }

    #[test]
    fn overloaded_status_is_reported() {
        let answer = Decoder::new()
            .feed(&end(protocol_status::OVERLOADED))
            .unwrap()
            .unwrap();
        assert_eq!(answer.protocol_status, protocol_status::OVERLOADED);
    }

    #[test]
    fn stdin_ends_once() {
        let begin = [1, 1, 0, 1, 0, 8, 0, 0];
        let mut request = [&begin[..], &EMPTY_STDIN, &EMPTY_STDIN, &EMPTY_STDIN].concat();
        end_stdin_once(&mut request);
        assert_eq!(request, [&begin[..], &EMPTY_STDIN].concat());
        end_stdin_once(&mut request);
        assert_eq!(request, [&begin[..], &EMPTY_STDIN].concat());
    }
}
