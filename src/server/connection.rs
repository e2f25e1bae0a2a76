//! One connection, as a loop of three steps with one owner each:
//!
//! 1. Read a request ([`Client::read_request`]): its head within `CLIENT_TIMEOUT`, with its body
//!    drained (up to [`MAX_DRAINED_BODY`]) or refused; before waiting for more bytes, answers
//!    already queued (pipelined requests) are sent.
//! 2. Respond ([`respond::respond`]): the shared state and the request make a reply; no socket.
//! 3. Send ([`Client::send`]): queue the reply; then keep alive (writing when the queue is full
//!    or before the next wait), or write, close and linger.
//!
//! Dropped at any await. The task of a connection is dropped when the cap makes room
//! ([`super::table::Table::make_room`]), when the stop closes connections that are not
//! answering, and when a second signal (or the end of the stop's grace) ends the process. Every
//! await is safe to abandon: dropping the task drops the socket (the client sees the end of the
//! stream, or a reset if it had unread bytes in flight), the pending deadline (it leaves the
//! wheel), and a probe in flight (the single-flight hands the probe to a waiter, if any; its
//! FastCGI socket closes). Nothing is left half-done in shared state: the table entry is what
//! was dropped, and counters are only bumped after the awaits they count.

// Plain indexing and arithmetic on our own buffer's bounds, whose invariants [`Input`] states;
// the client's bytes are parsed by `proto::http`, where both lints stay denied.
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::debug;
use smol::future;

use crate::deadline;
use crate::limits::{HTTP_READ_CHUNK, MAX_DRAINED_BODY, MAX_HEAD_BYTES, MAX_QUEUED_RESPONSE_BYTES};
use crate::os::socket::Stream;
use crate::proto::http::{self, Body, Head, Method};

use super::respond::{self, Reply};
use super::table::Phase;
use super::Shared;

/// How long an error-close waits for the client's last bytes before closing, so the client reads
/// our answer instead of a reset.
const LINGER: Duration = Duration::from_secs(1);

/// Most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// Most output buffer an idle connection keeps (a ping's answer is about 150 bytes).
const IDLE_OUT_BYTES: usize = 1024;

/// The body of a `408`.
const TOO_SLOW: &str = "the request did not arrive in time (CLIENT_TIMEOUT)\n";

/// One connection's task: answers its requests until it is done, then leaves the table.
pub(crate) async fn run(shared: Rc<Shared>, stream: Stream, phase: Rc<Cell<Phase>>, id: u64) {
    Client::new(stream).answer_requests(&shared, &phase).await;
    let open = shared.table.remove_finished(id);
    shared.house.closed(open, Instant::now());
}

/// What a write step leaves the connection to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
enum Next {
    /// Go on: read the next request.
    KeepOpen,
    /// The connection is done: the client is gone or too slow, or the answer said close.
    Close,
}

/// How a read for more request bytes ended.
enum Read {
    Data,
    Closed,
    TimedOut,
    /// The buffer already holds [`MAX_HEAD_BYTES`]: the head parser answers `431` before this,
    /// so only a broken invariant gets here, and it still answers what it means.
    Full,
}

/// The body of a `431` or `400`.
const BAD_HEAD: &str = "the request head is malformed or too large\n";

/// Why no request was read.
enum NoRequest {
    /// The client left, or stayed idle past its deadline, or the stop came between requests:
    /// close without a word.
    Quiet,
    /// Answer this status and body, then close and linger.
    Answer(u16, &'static str),
}

/// Request bytes read and not yet taken, `bytes[..filled]`; the rest of `bytes` is room for the
/// next read, zeroed once when it grows rather than at every read.
///
/// Invariants: `filled <= bytes.len()` and `filled <= MAX_HEAD_BYTES`: only
/// [`Client::read_more`] commits a read, into at most the room up to [`MAX_HEAD_BYTES`] it asked
/// for (a reader fills at most the slice it is given); whatever is taken was counted in
/// `..filled` first.
#[derive(Default)]
struct Input {
    bytes: Vec<u8>,
    filled: usize,
}

impl Input {
    /// The bytes read and not yet taken.
    fn pending(&self) -> &[u8] {
        &self.bytes[..self.filled]
    }

    fn is_empty(&self) -> bool {
        self.filled == 0
    }

    fn len(&self) -> usize {
        self.filled
    }

    /// Drops the first `n` pending bytes (a head, a body: `n <= len()`).
    fn take(&mut self, n: usize) {
        self.bytes.copy_within(n..self.filled, 0);
        self.filled -= n;
    }

    /// `room` bytes after the pending ones, to read into; [`Input::commit`] then takes what the
    /// read filled.
    fn room(&mut self, room: usize) -> &mut [u8] {
        let end = self.filled + room;
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        &mut self.bytes[self.filled..end]
    }

    /// Takes the `read` bytes a read put at the start of the last [`Input::room`].
    fn commit(&mut self, read: usize) {
        self.filled += read;
    }

    /// Hands the storage back when nothing is pending and it grew past `keep` bytes.
    fn shed(&mut self, keep: usize) {
        if self.filled == 0 && self.bytes.len() > keep {
            self.bytes = Vec::new();
        }
    }
}

/// One HTTP client: the socket, unparsed input, queued output.
pub(crate) struct Client {
    stream: Stream,
    buf: Input,
    out: Vec<u8>,
    /// Whether a response has been queued on this connection.
    answered: bool,
}

impl Client {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: Input::default(),
            out: Vec::new(),
            answered: false,
        }
    }

    /// The keep-alive loop: read a request, respond, send; repeat.
    async fn answer_requests(&mut self, shared: &Shared, phase: &Cell<Phase>) {
        let timeout = shared.config.client_timeout;
        loop {
            let head = match self.read_request(shared, phase, timeout).await {
                Ok(head) => head,
                Err(NoRequest::Quiet) => return,
                Err(NoRequest::Answer(status, body)) => {
                    return self.answer_error(status, body).await
                }
            };
            phase.set(Phase::Busy);
            // Answers queued before this one go out before a wait on php-fpm.
            if respond::waits(&head) && self.flush(timeout, phase).await == Next::Close {
                return;
            }
            let reply = respond::respond(shared, &head).await;
            let close = !head.keep_alive || shared.table.stopping();
            if self.send(reply, &head, close, timeout, phase).await == Next::Close {
                return;
            }
        }
    }

    /// Step 1: reads one request head (and drains its body) within `timeout`; the body it did
    /// not drain (chunked, too large) makes its `keep_alive` false.
    async fn read_request(
        &mut self,
        shared: &Shared,
        phase: &Cell<Phase>,
        timeout: Duration,
    ) -> Result<Head, NoRequest> {
        let deadline = deadline::after(timeout);
        let mut head = loop {
            // (Between requests nothing is pending: no parse of an empty buffer.)
            if !self.buf.is_empty() {
                match http::parse_head(self.buf.pending()) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(error) => {
                        debug!("bad request head ({error:?}), answering {}", error.status());
                        return Err(NoRequest::Answer(error.status(), BAD_HEAD));
                    }
                }
            }
            // Before waiting for more bytes, send what is queued.
            if self.flush(timeout, phase).await == Next::Close
                || (self.buf.is_empty() && shared.table.stopping())
            {
                return Err(NoRequest::Quiet);
            }
            let between_requests = self.buf.is_empty();
            match self.read_more(deadline, phase, between_requests).await {
                Read::Data => {}
                Read::Closed => return Err(NoRequest::Quiet),
                Read::TimedOut if self.buf.is_empty() => return Err(NoRequest::Quiet),
                Read::TimedOut => return Err(NoRequest::Answer(408, TOO_SLOW)),
                Read::Full => return Err(NoRequest::Answer(431, BAD_HEAD)),
            }
        };
        self.buf.take(head.len);
        // The body: read and dropped when small, else left unread (and the connection closed).
        let buffered = self.buf.len() as u64;
        // At most MAX_DRAINED_BODY (64 KiB): a usize.
        let mut remaining = match head.body {
            Body::None => 0,
            // The client waits for a `100 Continue` before it sends the rest of its body: answer
            // at once instead (we never need the body), and close after.
            Body::Length(len) if head.expect_continue && len > buffered => {
                head.keep_alive = false;
                0
            }
            Body::Length(len) if len <= MAX_DRAINED_BODY => len as usize,
            Body::Length(_) | Body::Chunked => {
                head.keep_alive = false;
                0
            }
        };
        while remaining > 0 {
            let take = remaining.min(self.buf.len());
            self.buf.take(take);
            remaining -= take;
            if remaining == 0 {
                break;
            }
            match self.read_more(deadline, phase, false).await {
                Read::Data => {}
                Read::Closed => return Err(NoRequest::Quiet),
                Read::TimedOut => return Err(NoRequest::Answer(408, TOO_SLOW)),
                Read::Full => return Err(NoRequest::Answer(431, BAD_HEAD)),
            }
        }
        Ok(head)
    }

    /// Step 3: queues `reply`; then keeps the connection (writing if the queue is full), or
    /// writes it and closes.
    async fn send(
        &mut self,
        reply: Reply<'_>,
        head: &Head,
        close: bool,
        timeout: Duration,
        phase: &Cell<Phase>,
    ) -> Next {
        self.answered = true;
        respond::render(&mut self.out, reply, head.method == Method::Head, close);
        if close {
            // A body we did not read (chunked, too large) would turn the close into a reset
            // that can destroy the answer in flight: linger as after an error.
            let unread = !self.buf.is_empty()
                || head.expect_continue && head.body != Body::None
                || !matches!(head.body, Body::None | Body::Length(0..=MAX_DRAINED_BODY));
            if unread {
                let _ = deadline::at(deadline::after(LINGER), self.close_after_error()).await;
            } else {
                let _ = self.flush(timeout, phase).await;
            }
            return Next::Close;
        }
        if self.out.len() < MAX_QUEUED_RESPONSE_BYTES {
            return Next::KeepOpen;
        }
        self.flush(timeout, phase).await
    }

    /// Reads more request bytes (never more than one head's worth), keeping `phase` up to date:
    /// idle while nothing of the next request has come (`between_requests`), reading from its
    /// first byte until its body is in, with the time of that first byte.
    async fn read_more(
        &mut self,
        deadline: Instant,
        phase: &Cell<Phase>,
        between_requests: bool,
    ) -> Read {
        let start = self.buf.len();
        let room = (MAX_HEAD_BYTES - start).min(HTTP_READ_CHUNK);
        if room == 0 {
            return Read::Full;
        }
        let now = Instant::now();
        match (phase.get(), between_requests) {
            (Phase::Idle { .. }, true) | (Phase::Reading { .. }, false) => {}
            (_, true) => phase.set(Phase::Idle { since: now }),
            (_, false) => phase.set(Phase::Reading { since: now }),
        }
        if between_requests && self.answered {
            self.shed_buffers();
            // A client reads our answer before it sends its next request: wait for it rather
            // than try a read that cannot succeed yet (one system call less per request).
            match deadline::at(deadline, self.stream.readable()).await {
                Some(Ok(())) => {}
                Some(Err(_)) => return Read::Closed,
                None => return Read::TimedOut,
            }
        }
        let spare = self.buf.room(room);
        let read = deadline::at(deadline, self.stream.read(spare)).await;
        let (filled, outcome) = match read {
            Some(Ok(0)) | Some(Err(_)) => (0, Read::Closed),
            Some(Ok(n)) => (n, Read::Data),
            None => (0, Read::TimedOut),
        };
        self.buf.commit(filled);
        if filled > 0 && start == 0 {
            phase.set(Phase::Reading {
                since: Instant::now(),
            });
        }
        outcome
    }

    /// Before an idle wait: hands back buffers grown past what a small request and its answer
    /// need, so an idle connection costs the same after a 7.9 KiB head or a `/metrics` page as
    /// after a ping. (The small ones are kept: no allocation per request on the usual path.)
    fn shed_buffers(&mut self) {
        self.buf.shed(HTTP_READ_CHUNK);
        if self.out.is_empty() && self.out.capacity() > IDLE_OUT_BYTES {
            self.out = Vec::new();
        }
    }

    /// Writes the queued responses within `timeout`; [`Next::Close`] if the client is gone or too
    /// slow.
    /// While a write waits for a client that does not read, `phase` says so: at the cap, such a
    /// connection gives way to a newcomer after [`super::table::SLOW_REQUEST`].
    async fn flush(&mut self, timeout: Duration, phase: &Cell<Phase>) -> Next {
        if self.out.is_empty() {
            return Next::KeepOpen;
        }
        let deadline = deadline::after(timeout);
        let written = {
            let mut write = std::pin::pin!(self.stream.write_all(&self.out));
            match future::poll_once(&mut write).await {
                Some(done) => Some(done),
                None => {
                    let before = phase.replace(Phase::Writing {
                        since: Instant::now(),
                    });
                    let done = deadline::at(deadline, write).await;
                    phase.set(before);
                    done
                }
            }
        };
        self.out.clear();
        if self.out.capacity() > MAX_QUEUED_RESPONSE_BYTES {
            self.out = Vec::new();
        }
        match written {
            Some(Ok(())) => Next::KeepOpen,
            _ => Next::Close,
        }
    }

    /// Answers `status` with a close, then lingers so the client reads it.
    async fn answer_error(&mut self, status: u16, body: &str) {
        self.answer_and_close(status, body, LINGER).await;
    }

    /// Answers a newcomer refused at the cap: `503` and a close, within `within`.
    pub(crate) async fn refuse(mut self, within: Duration) {
        let body = "busy: every connection is in use (MAX_CONNECTIONS); retry\n";
        self.answer_and_close(503, body, within).await;
    }

    /// Queues `status` and `body` with `Connection: close`, then writes it, closes and lingers,
    /// all within `within`.
    async fn answer_and_close(&mut self, status: u16, body: &str, within: Duration) {
        let response = http::Response {
            status,
            body,
            head_only: false,
            close: true,
        };
        http::render(&mut self.out, response);
        let _ = deadline::at(deadline::after(within), self.close_after_error()).await;
    }

    /// Writes what is queued, shuts down our side, and reads what the client still sends
    /// (bounded) so that closing does not reset the connection before it reads our answer.
    async fn close_after_error(&mut self) {
        if self.stream.write_all(&self.out).await.is_err() {
            return;
        }
        self.out.clear();
        self.stream.shutdown_write();
        let mut dropped = 0usize;
        self.buf.take(self.buf.len());
        while dropped < LINGER_BYTES {
            match self.stream.read(self.buf.room(HTTP_READ_CHUNK)).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    }
}
