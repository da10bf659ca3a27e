//! Hostile text made harmless where it is printed: on a terminal and in a spreadsheet.
//!
//! Device names, tags, KB names and API error messages come from a remote service (and through
//! the database) and may hold anything. On a terminal, control characters move the cursor, clear
//! the screen, set the window title or ring the bell, and bidi overrides reorder what is shown;
//! they are shown as escapes instead (`\x1b`, `\u{202e}`). Backslashes are left as they are, so
//! `CONTOSO\host` reads as written. In a spreadsheet, a CSV cell that starts with `=`, `+`, `-`,
//! `@`, tab or carriage return is a formula: it gets a leading `'` (OWASP, "CSV Injection").

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` for one line of a terminal: C0 controls (newline and tab too), DEL, C1 controls and
/// the bidi overrides and isolates escaped; everything else as is.
pub fn terminal(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// [`terminal`] keeping line breaks, for messages whose lines are ours (an error chain with a
/// list of configuration problems): a hostile part may start a line but not drive the terminal.
pub fn terminal_lines(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

/// A CSV text cell a spreadsheet will not evaluate: one that starts with `=`, `+`, `-`, `@`, tab
/// or CR gets a leading `'`. The CSV writer quotes the cell where RFC 4180 needs it.
pub fn csv_text(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Whether `c` can drive a terminal: C0, DEL, C1, or a bidi override or isolate.
fn is_control(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let hostile = |c: char| is_control(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        // Writing to a String cannot fail.
        let _ = match c {
            c if !hostile(c) => {
                out.push(c);
                Ok(())
            }
            c if c.is_ascii() => write!(out, "\\x{:02x}", u32::from(c)),
            c => write!(out, "\\u{{{:x}}}", u32::from(c)),
        };
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_every_control_and_bidi_override() {
        let cases = [
            ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
            ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
            ("a\nb\r\tc\0", "a\\x0ab\\x0d\\x09c\\x00"),
            ("\x7f\u{80}\u{9b}31m", "\\x7f\\u{80}\\u{9b}31m"),
            ("\u{202e}txt.exe\u{202c}", "\\u{202e}txt.exe\\u{202c}"),
            ("\u{2066}\u{2069}", "\\u{2066}\\u{2069}"),
        ];
        for (hostile, shown) in cases {
            assert_eq!(terminal(hostile), shown, "{hostile:?}");
        }
    }

    #[test]
    fn terminal_leaves_printable_text_alone_and_borrowed() {
        for text in
            ["ws-00001.corp.contoso.com", "CONTOSO\\host", "Mise à jour ✓ 更新", "\u{a0}\u{2028}"]
        {
            assert!(matches!(terminal(text), Cow::Borrowed(t) if t == text), "{text:?}");
        }
    }

    #[test]
    fn every_escaped_char_is_a_control_and_none_survives() {
        for n in (0..0x3000u32).filter_map(char::from_u32) {
            let shown = terminal(n.encode_utf8(&mut [0; 4])).into_owned();
            let escaped = shown.starts_with('\\') && shown.len() > 1;
            assert_eq!(escaped, is_control(n), "{n:?} shown as {shown:?}");
            assert!(!shown.chars().any(is_control), "{n:?} shown as {shown:?}");
        }
    }

    #[test]
    fn terminal_lines_keeps_newlines_only() {
        assert_eq!(
            terminal_lines("2 problems:\n  a\x1b[1A\r\n  b"),
            "2 problems:\n  a\\x1b[1A\\x0d\n  b"
        );
    }

    #[test]
    fn csv_text_prefixes_formula_starts_only() {
        for hostile in ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\r=1"] {
            assert_eq!(csv_text(hostile), format!("'{hostile}"));
        }
        for text in ["ws-1", "5001", "", " =1", "'=1", "a=b"] {
            assert!(matches!(csv_text(text), Cow::Borrowed(t) if t == text), "{text:?}");
        }
    }
}
