//! php-fpm's full status page (`?full`): `status::parse_full`, its aggregates and thresholds,
//! `status::render`, and the Prometheus text of `metrics::render` with and without the per-process
//! series.
//!
//! Input layout: one flag byte (bit 0: the FastCGI answer was cut at its cap), then the page.
#![no_main]

use fastcgi_healthcheck::limits::MAX_PROCESSES;
use fastcgi_healthcheck::metrics;
use fastcgi_healthcheck::status::{self, MAX_REQUEST_DURATION_MICROS, PROCESS_FIELDS};
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

fuzz_target!(|data: &[u8]| {
    let Some((flags, page)) = data.split_first() else {
        return;
    };
    let cut = flags & 1 == 1;
    let Ok(status) = status::parse_full(page, cut) else {
        assert!(status::parse(page).is_err(), "parse_full fails where parse does not");
        return;
    };
    // The summary is what `parse` reads.
    assert_eq!(status::parse(page).unwrap().fields, status.fields);
    let processes = status.processes.as_ref().expect("parse_full reads processes");
    assert!(processes.list.len() <= MAX_PROCESSES);
    assert!(!cut || processes.truncated, "a cut page must say it is truncated");
    for p in &processes.list {
        assert_ne!(p.pid, 0);
        assert!(p.request_duration.is_none_or(|d| d <= MAX_REQUEST_DURATION_MICROS));
        assert_ne!(p.state, "Getting request informations");
    }
    let counted: u64 = processes.by_state().iter().map(|(_, n)| n).sum();
    assert_eq!(counted, processes.list.len() as u64);

    // Every aggregate as a max and a min threshold: one line per failure, no newline inside.
    let query: Vec<String> = PROCESS_FIELDS
        .iter()
        .flat_map(|f| {
            let name = f.name.replace(' ', "-");
            [format!("max-{name}=1"), format!("min-{name}=1")]
        })
        .collect();
    let thresholds = status::parse_thresholds(&query.join("&")).unwrap();
    assert!(status::needs_processes(&thresholds));
    for line in status::evaluate(&status, None, &thresholds) {
        assert!(!line.contains('\n'), "failure line with a newline: {line:?}");
        // A truncated part's aggregates are lower bounds: never a definite minimum failure.
        assert!(
            !processes.truncated || !line.contains(" < "),
            "a definite minimum from a partial count: {line:?}"
        );
    }
    let body = status::render(&status, None, &[]);
    assert!(
        !body.chars().any(|c| c.is_control() && c != '\n'),
        "raw control character in {body:?}"
    );
    for per_process in [false, true] {
        let text = metrics::page_exposition(Some(&status), per_process);
        check_exposition(&text);
        let series = text.matches("phpfpm_process_state{").count();
        assert_eq!(series, if per_process { processes.list.len() } else { 0 });
    }
});
