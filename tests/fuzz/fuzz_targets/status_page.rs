//! php-fpm's status page and thresholds: `status::parse`, `status::parse_thresholds`,
//! `status::evaluate`, `status::render`, and the Prometheus text of `metrics::render`.
//!
//! Input layout: the page, then optionally a 0xFF byte and a query string (lossy UTF-8); without
//! 0xFF the whole input is both the page and the query.
#![no_main]

use fastcgi_healthcheck::metrics;
use fastcgi_healthcheck::status::{
    self, Bound, Status, NUMERIC_FIELDS, PROCESS_FIELDS, QUEUED_CONNECTIONS,
};
use libfuzzer_sys::fuzz_target;

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Reads `{k="v",...}` at the start of `s`; returns what follows the `}`.
fn labels(s: &str) -> Result<&str, String> {
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = &rest[..eq];
        if !valid_name(key) || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        // The value: any character but a raw '"' or '\\' or newline; escapes \\ \" \n.
        loop {
            let mut chars = value.chars();
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some('"') => {
                    value = chars.as_str();
                    break;
                }
                Some('\\') => match chars.next() {
                    Some('\\' | '"' | 'n') => value = chars.as_str(),
                    other => return Err(format!("bad escape \\{other:?} in label value")),
                },
                Some('\n') => return Err("raw newline in label value".into()),
                Some(_) => value = chars.as_str(),
            }
        }
        rest = value.strip_prefix(',').unwrap_or(value);
    }
}

/// Every line is a `# HELP`/`# TYPE` comment or `name{labels} value`.
fn check_exposition(text: &str) {
    assert!(text.ends_with('\n'), "exposition does not end with a newline");
    for line in text[..text.len() - 1].split('\n') {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "odd comment {line:?}"
            );
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        assert!(valid_name(name), "bad metric name in line {line:?}\n{text}");
        let rest = &line[name_end..];
        let rest = if rest.starts_with('{') {
            labels(rest).unwrap_or_else(|e| panic!("{e} in line {line:?}"))
        } else {
            rest
        };
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value in line {line:?}"));
        assert!(
            value.parse::<f64>().is_ok() || matches!(value, "+Inf" | "-Inf" | "NaN"),
            "bad value {value:?} in line {line:?}"
        );
    }
}

fn check_status(status: &Status, query: &str) {
    let thresholds = status::parse_thresholds(query);
    let thresholds = match thresholds {
        Ok(thresholds) => {
            let pairs = query.split('&').filter(|p| !p.is_empty()).count();
            assert_eq!(thresholds.len(), pairs);
            for t in &thresholds {
                assert!(
                    NUMERIC_FIELDS.contains(&t.field)
                        || PROCESS_FIELDS.iter().any(|f| f.name == t.field)
                        || t.field == QUEUED_CONNECTIONS
                );
            }
            thresholds
        }
        Err(message) => {
            assert!(!message.is_empty());
            Vec::new()
        }
    };
    // Without the kernel's figure a queued-connections threshold fails (unknown), as a field
    // missing from the page does.
    let failed = status::evaluate(status, None, &thresholds);
    let expected = thresholds
        .iter()
        .filter(|t| match (status.number(t.field).filter(|_| t.field != QUEUED_CONNECTIONS), t.kind) {
            (None, _) => true,
            (Some(v), Bound::Max) => v > t.limit,
            (Some(v), Bound::Min) => v < t.limit,
        })
        .count();
    assert_eq!(failed.len(), expected, "evaluate: wrong number of failures");
    for line in &failed {
        assert!(!line.contains('\n'), "failure line with a newline: {line:?}");
    }
    let body = status::render(status, None, &failed);
    if failed.is_empty() {
        assert!(body.starts_with("ok\n\n"));
    } else {
        assert!(body.starts_with(&(failed.join("\n") + "\n\n")));
    }
    let header_lines = failed.len().max(1) + 1;
    assert_eq!(
        body.split('\n').count() - 1,
        header_lines + status.fields.len(),
        "render: a field took more than one line:\n{body:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let (page, query) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let query = String::from_utf8_lossy(query);

    match status::parse(page) {
        Ok(status) => {
            assert!(status.text("pool").is_some());
            assert!(status.number("accepted conn").is_some());
            assert!(status.fields.len() <= 64);
            for (key, value) in &status.fields {
                assert!(!key.contains('\n') && !value.contains('\n'));
                assert_eq!(key.trim(), key);
                assert_eq!(value.trim(), value);
            }
            check_status(&status, &query);
            let text = metrics::page_exposition(Some(&status), false);
            check_exposition(&text);
        }
        Err(e) => {
            assert!(!e.to_string().contains('\n'));
        }
    }

    // A status built by hand, with the query text as the pool name and a field value: label
    // escaping must hold for any text, not only for what `parse` lets through.
    let built = Status {
        fields: vec![
            ("pool".to_owned(), query.to_string()),
            ("accepted conn".to_owned(), "7".to_owned()),
            ("listen queue".to_owned(), query.to_string()),
        ],
        processes: None,
    };
    check_status(&built, &query);
    check_exposition(&metrics::page_exposition(Some(&built), false));
    check_exposition(&metrics::page_exposition(None, false));
});
