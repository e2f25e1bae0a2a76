//! FastCGI answers: the bounded record decoder fed in input-chosen chunks, both through `feed` and
//! through `spare`/`commit`, then the CGI functions on what it decoded.
//!
//! Input layout: byte 0 chooses the chunk sizes, byte 1 (when >= 192) repeats the rest of the
//! input up to 65 times (to reach the stdout/stderr bounds), the rest are the bytes the peer sends.
#![no_main]

use fastcgi_healthcheck::cgi;
use fastcgi_healthcheck::fcgi::{Answer, DecodeError, Decoder};
use fastcgi_healthcheck::limits::{LOGGED_STDERR_BYTES, MAX_FCGI_STDERR, MAX_FCGI_STDOUT};
use libfuzzer_sys::fuzz_target;

type Outcome = Result<Option<Answer>, DecodeError>;

/// Chunk sizes from a seed: 1..=max, with `max` from the seed's low bits.
struct Chunks {
    state: u32,
    max: usize,
}

impl Chunks {
    fn new(seed: u8, len: usize) -> Self {
        let max = match seed & 7 {
            0 => 1,
            1 => 2,
            2 => 7,
            3 => 8,
            4 => 9,
            5 => 100,
            6 => 1000,
            _ => 4096, // FCGI_READ_CHUNK: the most spare() offers
        };
        Self {
            state: (u32::from(seed) << 16) ^ (len as u32) ^ 0x9e37_79b9,
            max,
        }
    }

    fn next(&mut self) -> usize {
        // xorshift32
        let mut x = self.state | 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        1 + (x as usize) % self.max
    }
}

/// Feeds `bytes` in chunks; returns the first final outcome (answer or error), or `Ok(None)`.
fn run(bytes: &[u8], seed: u8, via_spare: bool) -> (Outcome, Vec<Outcome>) {
    let mut decoder = Decoder::new();
    let mut chunks = Chunks::new(seed, bytes.len());
    let mut steps = Vec::new();
    let mut at = 0;
    let mut fed = 0;
    while at < bytes.len() {
        let want = chunks.next().min(bytes.len() - at);
        let outcome = if via_spare {
            let spare = decoder.spare();
            assert!(!spare.is_empty(), "spare() gave no room");
            let n = want.min(spare.len());
            spare[..n].copy_from_slice(&bytes[at..at + n]);
            at += n;
            fed += n;
            decoder.commit(n)
        } else {
            let outcome = decoder.feed(&bytes[at..at + want]);
            at += want;
            fed += want;
            outcome
        };
        assert_eq!(decoder.received(), fed, "received() is not the bytes given");
        steps.push(outcome.clone());
        if !matches!(outcome, Ok(None)) {
            return (outcome, steps);
        }
    }
    (Ok(None), steps)
}

fn check_cgi(stdout: &[u8]) {
    let verdict = cgi::check(stdout, b"pong");
    if let Err(e) = &verdict {
        let text = e.to_string();
        assert!(!text.contains('\n'), "CgiError on more than one line: {text:?}");
    }
    let headers = match cgi::split(stdout) {
        Some((headers, body)) => {
            assert!(stdout.starts_with(headers));
            assert!(stdout.ends_with(body));
            let gap = stdout.len() - headers.len() - body.len();
            let sep = &stdout[headers.len()..headers.len() + gap];
            assert!(sep == b"\r\n\r\n" || sep == b"\n\n", "separator {sep:?}");
            // The split is at the first blank line.
            assert!(cgi::find(headers, b"\n\n").is_none());
            assert!(cgi::find(headers, b"\r\n\r\n").is_none());
            if verdict.is_ok() {
                assert!(cgi::find(body, b"pong").is_some());
            }
            headers
        }
        None => {
            assert_eq!(verdict, Err(cgi::CgiError::NoHeaderEnd));
            stdout
        }
    };
    if let Some(value) = cgi::status_header(headers) {
        assert!(cgi::find(headers, value).is_some());
        assert!(!value.contains(&b'\n'));
        if let Some(code) = cgi::status_code(value) {
            assert!((0..=999).contains(&code));
        }
    }
    for shown in [cgi::quote(stdout), cgi::quote(headers)] {
        assert!(
            !shown.chars().any(char::is_control),
            "quote output has a raw control character: {shown:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [seed, repeat, rest @ ..] = data else {
        return;
    };
    let repeat = if *repeat >= 192 { usize::from(*repeat - 190) } else { 1 };
    let bytes: Vec<u8> = rest.repeat(repeat);

    let (by_feed, steps_feed) = run(&bytes, *seed, false);
    let (by_spare, steps_spare) = run(&bytes, *seed, true);
    assert_eq!(by_feed, by_spare, "feed and spare/commit disagree");
    assert_eq!(steps_feed, steps_spare, "feed and spare/commit disagree on a step");

    // Chunking does not matter: one feed of everything gives the same answer or error.
    let whole = Decoder::new().feed(&bytes);
    assert_eq!(whole, by_feed, "whole feed and chunked feed disagree");

    match &by_feed {
        Ok(Some(answer)) => {
            assert!(answer.stdout.len() <= MAX_FCGI_STDOUT);
            assert!(answer.stderr.len() <= LOGGED_STDERR_BYTES);
            assert!(answer.stderr.len() <= answer.stderr_len);
            assert!(answer.stderr_len <= MAX_FCGI_STDERR);
            check_cgi(&answer.stdout);
            let shown = cgi::quote(&answer.stderr);
            assert!(!shown.chars().any(char::is_control));
        }
        Ok(None) => {}
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'));
        }
    }
    // The CGI functions on the raw bytes too (they take any stdout).
    check_cgi(rest);
});
