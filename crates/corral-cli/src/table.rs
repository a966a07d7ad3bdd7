//! Plain-text tables and ages, laid out the way kubectl lays them out.
//!
//! kubectl aligns with a tab writer (minimum cell width 6, padding 3, the last column unpadded);
//! [`Table`] does the same, so scripts that cut kubectl's output cut ours.

use jiff::Timestamp;

/// A table: upper-case headers and rows of cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

const PADDING: usize = 3;
const MIN_WIDTH: usize = 6;

impl Table {
    pub fn new(headers: Vec<String>) -> Self {
        Self {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The width of every column but the last: widest cell (headers included) plus padding, at
    /// least the minimum.
    pub fn widths(&self) -> Vec<usize> {
        self.widths_of(true)
    }

    fn widths_of(&self, with_headers: bool) -> Vec<usize> {
        let header = with_headers.then_some(&self.headers);
        let columns = self
            .rows
            .iter()
            .chain(header)
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        (0..columns)
            .map(|i| {
                let widest = self
                    .rows
                    .iter()
                    .chain(header)
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0);
                (widest + PADDING).max(MIN_WIDTH)
            })
            .collect()
    }

    /// The table as text, one line per row (the header first unless `no_headers`), each line
    /// ending in a newline.
    pub fn render(&self, no_headers: bool) -> String {
        let widths = self.widths_of(!no_headers);
        let mut out = String::new();
        let header = (!no_headers).then_some(&self.headers);
        for row in header.into_iter().chain(&self.rows) {
            out.push_str(&render_row(row, &widths));
            out.push('\n');
        }
        out
    }
}

/// One row laid out in `widths` (cells beyond them are joined with the padding), without the
/// trailing newline and without trailing spaces.
pub fn render_row(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        line.push_str(cell);
        if i + 1 < row.len() {
            let width = widths
                .get(i)
                .copied()
                .unwrap_or(cell.chars().count() + PADDING);
            let pad = width.saturating_sub(cell.chars().count()).max(1);
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line.truncate(line.trim_end().len());
    line
}

/// kubectl's human duration: `5s`, `119s`, `3m12s`, `45m`, `5h30m`, `20h`, `2d`, `3d4h`, `400d`,
/// `2y30d`, `10y`. Negative durations (clock skew) show as `0s`.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        let years = hours / 24 / 365;
        return if days == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{days}d")
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of an RFC 3339 timestamp at `now`, or `<unknown>` when absent or unreadable.
pub fn age(timestamp: Option<&str>, now: Timestamp) -> String {
    match timestamp.and_then(|t| t.parse::<Timestamp>().ok()) {
        Some(t) => human_duration(now.as_second() - t.as_second()),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(headers: &[&str], rows: &[&[&str]]) -> Table {
        let mut t = Table::new(headers.iter().map(|s| s.to_string()).collect());
        for r in rows {
            t.push(r.iter().map(|s| s.to_string()).collect());
        }
        t
    }

    #[test]
    fn columns_align_like_kubectl() {
        let t = table(
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &[
                &["nginx-7c5ddbdf54-x2xkq", "1/1", "Running", "0", "5m"],
                &["web-0", "0/1", "Pending", "12", "3d4h"],
            ],
        );
        assert_eq!(
            t.render(false),
            "NAME                     READY   STATUS    RESTARTS   AGE\n\
             nginx-7c5ddbdf54-x2xkq   1/1     Running   0          5m\n\
             web-0                    0/1     Pending   12         3d4h\n"
        );
    }

    #[test]
    fn narrow_columns_keep_the_minimum_width_and_no_trailing_spaces() {
        let t = table(&["A", "B"], &[&["x", ""]]);
        assert_eq!(t.render(false), "A     B\nx\n");
        assert_eq!(t.render(true), "x\n");
    }

    #[test]
    fn an_empty_table_is_just_its_header() {
        assert_eq!(table(&["NAME", "AGE"], &[]).render(false), "NAME   AGE\n");
    }

    #[test]
    fn durations_read_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (5, "5s"),
            (119, "119s"),
            (192, "3m12s"),
            (180, "3m"),
            (45 * 60, "45m"),
            (5 * 3600 + 30 * 60, "5h30m"),
            (20 * 3600, "20h"),
            (2 * 86400, "2d"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (400 * 86400, "400d"),
            (2 * 365 * 86400 + 30 * 86400, "2y30d"),
            (10 * 365 * 86400, "10y"),
        ];
        for (seconds, text) in cases {
            assert_eq!(human_duration(seconds), text, "{seconds}s");
        }
    }

    #[test]
    fn age_reads_rfc3339_and_tolerates_garbage() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("valid");
        assert_eq!(age(Some("2026-01-01T00:00:00Z"), now), "10m");
        assert_eq!(age(Some("yesterday"), now), "<unknown>");
        assert_eq!(age(None, now), "<unknown>");
    }
}
