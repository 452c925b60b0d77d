//! How results look: aligned tables and one-line messages for people,
//! compact JSON (one document, or one per line for streams) for scripts,
//! and a progress line on standard error for long exports.
//!
//! Kept apart from the commands so that every command formats alike.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, Local, Utc};
use natter_client::Message;
use serde::Serialize;

/// Prints `value` as one line of JSON on standard output.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    let text = serde_json::to_string(value).expect("output serialises");
    println!("{text}");
}

/// A table with a header row, columns padded to their widest cell.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self {
            header: header.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let _ = out.write_all(self.render().as_bytes());
    }

    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(width(cell));
                }
            }
        }
        let mut out = String::new();
        let mut line = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let mut text = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                text.push_str(cell);
                if i < last {
                    let pad = widths[i] - width(cell) + 2;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(self.header.clone());
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect());
        }
        out
    }
}

/// A timestamp in local time, to the minute.
pub fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

/// A timestamp in local time, to the second.
pub fn clock(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%H:%M:%S").to_string()
}

/// `s` cut to `max` characters, on one line.
pub fn short(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

pub fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

/// A message as one or more lines: `2026-11-29 07:01  #7  alice: text`,
/// continuation lines indented under the text.
pub fn message_line(m: &Message) -> String {
    let head = format!("{}  #{}  {}: ", when(m.sent_at), m.seq, m.sender);
    let body = match &m.body {
        None => "(deleted)".to_owned(),
        Some(b) => {
            let indent = " ".repeat(head.chars().count());
            let mut text = b
                .trim_end_matches('\n')
                .replace('\n', &format!("\n{indent}"));
            if m.edited_at.is_some() {
                text.push_str(" (edited)");
            }
            text
        }
    };
    format!("{head}{body}")
}

/// A progress line on standard error: rewritten in place on a terminal,
/// one line per update otherwise (when asked for with `--progress`).
pub struct Progress {
    enabled: bool,
    tty: bool,
    label: String,
    total: u64,
}

impl Progress {
    /// `forced`: `Some(true)` always, `Some(false)` never, `None` when
    /// standard error is a terminal.
    pub fn new(label: String, total: u64, forced: Option<bool>) -> Self {
        let tty = std::io::stderr().is_terminal();
        Self {
            enabled: forced.unwrap_or(tty),
            tty,
            label,
            total,
        }
    }

    pub fn update(&self, done: u64) {
        if !self.enabled {
            return;
        }
        let total = self.total.max(done);
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let text = format!("{}: {done}/{total} messages ({pct}%)", self.label);
        if self.tty {
            eprint!("\r\x1b[2K{text}");
        } else {
            eprintln!("{text}");
        }
    }

    pub fn finish(&self, done: u64) {
        if !self.enabled {
            return;
        }
        if self.tty {
            eprintln!("\r\x1b[2K{}: {done} messages", self.label);
        } else {
            eprintln!("{}: done, {done} messages", self.label);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", "N"]);
        t.row(vec!["alice".into(), "1".into()]);
        t.row(vec!["bo".into(), "12".into()]);
        assert_eq!(t.render(), "NAME   N\nalice  1\nbo     12\n");
    }

    #[test]
    fn short_cuts_and_flattens() {
        assert_eq!(short("a\nb", 10), "a b");
        assert_eq!(short("abcdef", 4), "abc…");
    }
}
