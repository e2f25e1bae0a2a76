//! HTTP request heads: `http::parse_head` on arbitrary bytes, `http::route`/`http::query` on
//! arbitrary UTF-8, `http::render` with arbitrary status and body.
#![no_main]

use fastcgi_healthcheck::http::{self, HeadError, Response, Route};
use fastcgi_healthcheck::limits::MAX_HEAD_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match http::parse_head(data) {
        Ok(Some(head)) => {
            assert!(head.len <= data.len(), "head.len {} > input {}", head.len, data.len());
            assert!(head.len <= MAX_HEAD_BYTES, "head.len {} > MAX_HEAD_BYTES", head.len);
            assert!(head.len > 0);
            // The head alone parses to the same head: nothing after it changes the result.
            let again = http::parse_head(&data[..head.len]);
            assert_eq!(again, Ok(Some(head.clone())), "re-parsing data[..head.len] differs");
            // The query is kept only for the status route.
            assert_eq!(head.query.is_some(), head.route == Route::Status);
        }
        Ok(None) => {
            assert!(
                data.len() < MAX_HEAD_BYTES,
                "Ok(None) for {} bytes (>= MAX_HEAD_BYTES)",
                data.len()
            );
            // An incomplete head stays incomplete (or becomes an error) when cut shorter.
            if let Some(cut) = data.len().checked_sub(1) {
                assert!(
                    !matches!(http::parse_head(&data[..cut]), Ok(Some(_))),
                    "a prefix of an incomplete head is complete"
                );
            }
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 431));
            assert_eq!(e == HeadError::TooLarge, e.status() == 431);
        }
    }

    // Routing on arbitrary UTF-8 (the input itself, lossily decoded if needed).
    let text = String::from_utf8_lossy(data);
    let route = http::route(&text);
    let query = http::query(&text);
    assert!(query.len() <= text.len());
    assert!(!query.contains('#'));
    if route != Route::NotFound {
        // Every known route starts at a '/' path (origin form) or after a scheme (absolute form).
        assert!(
            text.starts_with('/') || text.starts_with("http://") || text.starts_with("https://"),
            "route {route:?} for {text:?}"
        );
    }

    // Rendering: status from the first two bytes, flags from the third, body = the text.
    let status = match data {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 200,
    };
    let flags = data.get(2).copied().unwrap_or(0);
    let (head_only, close) = (flags & 1 != 0, flags & 2 != 0);
    let mut out = Vec::new();
    http::render(
        &mut out,
        Response {
            status,
            body: &text,
            head_only,
            close,
        },
    );
    let start = format!("HTTP/1.1 {status} ");
    assert!(out.starts_with(start.as_bytes()));
    let length = format!("\r\nContent-Length: {}\r\n", text.len());
    assert!(out.windows(length.len()).any(|w| w == length.as_bytes()));
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("rendered head has no end");
    let (rendered_head, rest) = out.split_at(end + 4);
    if head_only {
        assert!(rest.is_empty());
    } else {
        assert_eq!(rest, text.as_bytes());
    }
    // The rendered head is itself a well-formed HTTP/1.1 response head: no stray bare CR/LF.
    let head_text = std::str::from_utf8(rendered_head).expect("rendered head is UTF-8");
    for line in head_text.split("\r\n") {
        assert!(!line.contains(['\r', '\n']), "bare CR/LF in rendered line {line:?}");
    }
    if close {
        assert!(head_text.contains("\r\nConnection: close\r\n"));
    } else {
        assert!(head_text.contains("\r\nConnection: keep-alive\r\n"));
    }
});
