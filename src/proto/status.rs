//! php-fpm's status page (`pm.status_path`, plain-text `key: value` lines) and thresholds on its
//! numeric fields.
//!
//! Pure functions: [`parse`] reads the page, [`parse_thresholds`] reads `max-<field>=N` and
//! `min-<field>=N` pairs (from a query string or `check` flags), [`evaluate`] says which hold.

use std::fmt;

/// The numeric fields php-fpm reports, as they appear on the page.
pub const NUMERIC_FIELDS: [&str; 11] = [
    "start since",
    "accepted conn",
    "listen queue",
    "max listen queue",
    "listen queue len",
    "idle processes",
    "active processes",
    "total processes",
    "max active processes",
    "max children reached",
    "slow requests",
];

/// The text fields php-fpm reports.
pub const TEXT_FIELDS: [&str; 3] = ["pool", "process manager", "start time"];

/// A parsed status page: every `key: value` line, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `(key, value)` pairs, trimmed.
    pub fields: Vec<(String, String)>,
}

impl Status {
    /// The text of a field.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a numeric field.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.text(key)?.parse().ok()
    }
}

/// Why a status page cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusError {
    /// No `pool:` line and no numeric field: not php-fpm's status page.
    NotAStatusPage,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::NotAStatusPage => write!(f, "the answer is not php-fpm's status page (no \"pool:\" and \"accepted conn:\" lines)"),
        }
    }
}

/// Most lines read from a status page (php-fpm sends 14; `?full` adds per-process blocks, which
/// are not read).
const MAX_LINES: usize = 64;

/// Parses the body of php-fpm's plain-text status page.
pub fn parse(body: &[u8]) -> Result<Status, StatusError> {
    let text = String::from_utf8_lossy(body);
    let fields: Vec<(String, String)> = text
        .lines()
        .take(MAX_LINES)
        .take_while(|line| !line.starts_with('*'))
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            Some((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    let status = Status { fields };
    if status.text("pool").is_none() || status.number("accepted conn").is_none() {
        return Err(StatusError::NotAStatusPage);
    }
    Ok(status)
}

/// A bound on one numeric field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// The field, as on the page (`listen queue`).
    pub field: &'static str,
    /// `max`: fails when the value is above `limit`; `min`: when below.
    pub kind: Bound,
    /// The limit.
    pub limit: u64,
}

/// Which side a [`Threshold`] bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The value must not exceed the limit.
    Max,
    /// The value must not fall below the limit.
    Min,
}

/// Reads one `max-<field>` / `min-<field>` name (dashes for spaces) and its value; the error
/// starts with `name=value` and says what is accepted.
pub fn parse_threshold(name: &str, value: &str) -> Result<Threshold, String> {
    // Both halves escaped: the message stays one line whatever the name holds.
    let fail = |what: String| format!("{}={value:?} {what}", name.escape_debug());
    let (kind, field) = if let Some(field) = name.strip_prefix("max-") {
        (Bound::Max, field)
    } else if let Some(field) = name.strip_prefix("min-") {
        (Bound::Min, field)
    } else {
        return Err(fail(
            "is not a threshold; use max-<field>=N or min-<field>=N".to_owned(),
        ));
    };
    let wanted = field.replace('-', " ");
    let Some(field) = NUMERIC_FIELDS.iter().find(|f| **f == wanted) else {
        return Err(fail(format!(
            "names no numeric field of php-fpm's status page ({})",
            NUMERIC_FIELDS.map(|f| f.replace(' ', "-")).join(", ")
        )));
    };
    let limit = value
        .trim()
        .parse()
        .map_err(|_| fail("is not a whole number".to_owned()))?;
    Ok(Threshold { field, kind, limit })
}

/// Reads thresholds from a query string (`max-listen-queue=10&min-idle-processes=1`). Any other
/// parameter is an error naming it.
pub fn parse_thresholds(query: &str) -> Result<Vec<Threshold>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            parse_threshold(name, value)
        })
        .collect()
}

/// The thresholds that do not hold, each as a line such as `listen queue 12 > 10`.
pub fn evaluate(status: &Status, thresholds: &[Threshold]) -> Vec<String> {
    thresholds
        .iter()
        .filter_map(|t| {
            let Some(value) = status.number(t.field) else {
                return Some(format!("{} missing from the status page", t.field));
            };
            match t.kind {
                Bound::Max if value > t.limit => Some(format!("{} {value} > {}", t.field, t.limit)),
                Bound::Min if value < t.limit => Some(format!("{} {value} < {}", t.field, t.limit)),
                _ => None,
            }
        })
        .collect()
}

/// The body of `/fcgi-status`: the failed thresholds first (one per line), or `ok`, then every
/// field of the page as `key: value`.
pub fn render(status: &Status, failed: &[String]) -> String {
    let mut body = String::new();
    if failed.is_empty() {
        body.push_str("ok\n");
    }
    for line in failed {
        body.push_str(line);
        body.push('\n');
    }
    body.push('\n');
    for (key, value) in &status.fields {
        body.push_str(&format!("{key}: {}\n", value.escape_debug()));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &[u8] = b"pool:                 www\nprocess manager:      static\nstart time:           26/Nov/2026:11:15:06 +0000\nstart since:          61\naccepted conn:        7\nlisten queue:         12\nmax listen queue:     12\nlisten queue len:     511\nidle processes:       0\nactive processes:     2\ntotal processes:      2\nmax active processes: 2\nmax children reached: 0\nslow requests:        0\n";

    #[test]
    fn parses_every_field() {
        let status = parse(PAGE).unwrap();
        assert_eq!(status.text("pool"), Some("www"));
        assert_eq!(
            status.text("start time"),
            Some("26/Nov/2026:11:15:06 +0000")
        );
        for field in NUMERIC_FIELDS {
            assert!(status.number(field).is_some(), "{field}");
        }
        assert_eq!(status.number("listen queue"), Some(12));
    }

    #[test]
    fn not_a_status_page() {
        assert_eq!(
            parse(b"File not found.\n"),
            Err(StatusError::NotAStatusPage)
        );
        assert_eq!(parse(b""), Err(StatusError::NotAStatusPage));
        assert_eq!(
            parse(b"pool: www\naccepted conn: many\n"),
            Err(StatusError::NotAStatusPage)
        );
    }

    #[test]
    fn thresholds_from_a_query() {
        let t = parse_thresholds("max-listen-queue=10&min-idle-processes=1").unwrap();
        assert_eq!(
            t[0],
            Threshold {
                field: "listen queue",
                kind: Bound::Max,
                limit: 10
            }
        );
        assert_eq!(
            t[1],
            Threshold {
                field: "idle processes",
                kind: Bound::Min,
                limit: 1
            }
        );
        assert_eq!(
            evaluate(&parse(PAGE).unwrap(), &t),
            vec!["listen queue 12 > 10", "idle processes 0 < 1"]
        );
        assert!(evaluate(
            &parse(PAGE).unwrap(),
            &parse_thresholds("max-listen-queue=12").unwrap()
        )
        .is_empty());
    }

    #[test]
    fn renders_failures_then_fields() {
        let status = parse(PAGE).unwrap();
        let body = render(&status, &["listen queue 12 > 10".to_owned()]);
        assert!(
            body.starts_with("listen queue 12 > 10\n\npool: www\n"),
            "{body}"
        );
        assert!(render(&status, &[]).starts_with("ok\n\npool: www\n"));
    }

    #[test]
    fn bad_thresholds_name_the_parameter() {
        assert!(parse_thresholds("max-queue=1")
            .unwrap_err()
            .contains("max-queue"));
        assert!(parse_thresholds("listen-queue=1")
            .unwrap_err()
            .contains("listen-queue"));
        assert!(parse_thresholds("max-listen-queue=ten")
            .unwrap_err()
            .contains("max-listen-queue"));
        assert!(parse_thresholds("max-listen-queue=-1")
            .unwrap_err()
            .contains("max-listen-queue"));
        assert!(parse_thresholds("max-pool=1")
            .unwrap_err()
            .contains("max-pool"));
    }
}
