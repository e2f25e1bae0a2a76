//! The fixed bounds that protect memory and that the fuzz targets check, and the accept loop's
//! pauses.
//!
//! Bounds that users tune (probe deadline, client deadline, connection cap) live in
//! [`crate::config::Config`]. Timing rules that belong to one room stay with its code: the
//! connection's linger ([`crate::server`]'s `connection.rs`), when a stalled connection gives way
//! at the cap (`table.rs`), when memory is trimmed (`housekeeping.rs`), the log queue's length
//! ([`crate::os::log`]), the log throttles ([`crate::probe`]'s `report.rs`).

/// Largest HTTP request head we accept; a longer one gets `431` and a close.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Most header lines in one HTTP request head; more gets `431` and a close.
pub const MAX_HEADERS: usize = 64;

/// Largest request body (announced by `Content-Length`) that we read and discard to keep the
/// connection alive; a larger one is answered and the connection closed.
pub const MAX_DRAINED_BODY: u64 = 64 * 1024;

/// Most response bytes we queue for one client before writing them (pipelined requests).
pub const MAX_QUEUED_RESPONSE_BYTES: usize = 16 * 1024;

/// Largest FastCGI stdout we accept from the peer; more is `response_too_large`.
pub const MAX_FCGI_STDOUT: usize = 64 * 1024;

/// Largest FastCGI stderr we accept from the peer; more is `response_too_large`.
pub const MAX_FCGI_STDERR: usize = 64 * 1024;

/// Most FastCGI records in one answer (php-fpm sends a handful; its records carry up to 64 KiB).
pub const MAX_FCGI_RECORDS: usize = 1024;

/// Most bytes of record headers and padding in one answer, on top of the stdout and stderr caps
/// (8 header bytes and up to 7 of padding per record: 1,024 records fit).
pub const MAX_FCGI_OVERHEAD: usize = 16 * 1024;

/// How much of the peer's stderr we keep for the log line.
pub const LOGGED_STDERR_BYTES: usize = 512;

/// How many bytes we ask the socket for in one read of a FastCGI answer.
pub const FCGI_READ_CHUNK: usize = 4 * 1024;

/// How many bytes we ask the socket for in one read of an HTTP request.
pub const HTTP_READ_CHUNK: usize = 512;

/// Longest accepted `PING_PATH` / `PING_RESPONSE`.
pub const MAX_CONFIG_TEXT: usize = 1024;

/// Connections refused with `503` at the same time; past this a newcomer is closed at once.
pub const MAX_REJECTING: usize = 64;

/// How long a refused newcomer gets to receive its `503`.
pub const REJECT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Pause after `accept` fails for lack of descriptors or memory, or with an error of the listening
/// socket itself, so the loop does not spin.
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Largest stdout of php-fpm's full status page (`STATUS_PATH?full`) we keep. php-fpm 8.2 wrote
/// 374,569 bytes for 1,000 idle children (measured: 374 bytes a child, plus the summary); a busy
/// child adds its request method, URI, query and script. 1 MiB fits 1,000 children at up to
/// 1,040 bytes each. Past it the summary still counts and the per-process part is reported
/// truncated (the rest of the answer is read and dropped).
pub const MAX_FCGI_STATUS_STDOUT: usize = 1024 * 1024;

/// Most children read from the full status page (and so most per-process series); the others
/// are counted as left out.
pub const MAX_PROCESSES: usize = 1000;
