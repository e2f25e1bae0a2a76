//! The FastCGI request a probe sends: rendered once at start, logged at debug level.
//!
//! `fastcgi-client` renders it (BEGIN_REQUEST, PARAMS, empty STDIN) into memory, driven to its
//! end at once by a one-off `block_on`: writing into memory never waits. The parameters and the
//! fix-up of the records are pure protocol (`proto::fcgi`); the executor and the log line live
//! here, with the prober that uses them.

use std::pin::Pin;
use std::task::{Context, Poll};

use fastcgi_client::{Client, Request};
use smol::io::{AsyncRead, AsyncWrite};

use crate::proto::fcgi;

/// Renders the complete FastCGI request for a GET of `path` with `query` (without `?`), as a
/// RESPONDER without `FCGI_KEEP_CONN`; logs its parameters at debug level.
///
/// Nothing from an HTTP client goes in here: the request is fixed by configuration.
pub(crate) fn render(path: &str, query: &str) -> Vec<u8> {
    let params = fcgi::request_params(path, query);
    if log::log_enabled!(log::Level::Debug) {
        let mut pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort_unstable();
        log::debug!(
            "FastCGI request (sent as is by every probe): {}",
            pairs.join(" ")
        );
    }
    let mut recorder = Recorder(Vec::with_capacity(512));
    let request = Request::new(params, fastcgi_client::io::empty());
    let sent = smol::future::block_on(Client::new(&mut recorder).execute_once_stream(request));
    // Writing into memory cannot fail; the returned response stream is not needed.
    drop(sent);
    let mut bytes = recorder.0;
    fcgi::end_stdin_once(&mut bytes);
    bytes
}

/// An in-memory stream: records what is written, reads nothing.
struct Recorder(Vec<u8>);

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().0.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_request_is_well_formed() {
        let bytes = render("/fpm-ping", "");
        // BEGIN_REQUEST: RESPONDER, flags 0 (no keep-conn).
        assert_eq!(&bytes[..8], &[1, 1, 0, 1, 0, 8, 0, 0]);
        assert_eq!(&bytes[8..16], &[0, 1, 0, 0, 0, 0, 0, 0]);
        // Ends with one empty PARAMS record and one empty STDIN record.
        assert!(
            bytes.ends_with(&[1, 4, 0, 1, 0, 0, 0, 0, 1, 5, 0, 1, 0, 0, 0, 0]),
            "{bytes:?}"
        );
        let text = String::from_utf8_lossy(&bytes);
        for needle in [
            "SCRIPT_FILENAME/fpm-ping",
            "REQUEST_METHODGET",
            "SCRIPT_NAME/fpm-ping",
            "REQUEST_URI/fpm-ping",
        ] {
            assert!(text.contains(needle), "{needle} missing");
        }
        assert!(String::from_utf8_lossy(&render("/fpm-status", "json"))
            .contains("REQUEST_URI/fpm-status?json"));
    }
}
