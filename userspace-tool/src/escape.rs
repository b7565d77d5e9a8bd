//! Strings that come from outside, made safe to show.
//!
//! A command name is whatever its process chose (`prctl(PR_SET_NAME)`, or the name of the file it
//! ran); an interface name is whatever a user with a network namespace of their own chose; a log
//! file's header holds whatever the writing machine said, and a file name on the command line may
//! hold any bytes. Shown raw, such a string could move the cursor or clear the screen (ESC, CSI),
//! reorder what follows it on the line (bidi controls), hide itself (zero-width characters), or
//! end the line and start a forged record of its own. So every format shows them through this
//! module, escaped visibly and reversibly, as ps, ss and systemd do:
//!
//! - `\\` for a backslash, so that every other backslash starts an escape;
//! - `\t`, `\n`, `\r` for those three;
//! - `\xNN` for any other C0 control character and DEL, and for each byte that is not part of
//!   valid UTF-8 (`\xff`): `\xNN` always stands for exactly one byte;
//! - `\u{N}` (hexadecimal) for a valid character that terminals act on or that cannot be seen
//!   ([`is_unsafe`]): C1 controls U+0080..U+009F (U+009B is a CSI), whitespace other than the
//!   space (U+00A0, U+2028, ...), bidi controls (U+061C, U+200E, U+200F, U+202A..U+202E,
//!   U+2066..U+2069), zero-width and other invisible format characters.
//!
//! Everything else, printable UTF-8 (`café`, `名前`) included, is shown as it is.
//!
//! Three flavours:
//!
//! - [`text`]: free text (a file name in a message). The space stays a space.
//! - [`word`]: a value in a whitespace-separated column (the COMM column, a packet line's
//!   interface): the space is `\x20` too, so a column is always one word; an empty name is `""`
//!   and a `"` is `\x22` (so `""` means only that); a name that is just `-` is `\x2d` (a `-`
//!   column means there is no such thing).
//! - [`csv_field`]: as [`text`], and a first character `=`, `+`, `-` or `@` is `\x3d`, `\x2b`,
//!   `\x2d` or `\x40`, so that no spreadsheet takes the field for a formula.
//!
//! JSON keeps the exact bytes instead: see `output::json`.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The bytes of a NUL-padded field (a command or interface name) up to its first NUL.
pub fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Whether a valid character must not reach a terminal as it is: C0 and C1 controls and DEL,
/// whitespace other than the space, and the invisible characters that reorder or hide text (bidi
/// controls, zero-width characters, other format characters and blank fillers).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{ad}'                      // soft hyphen
        | '\u{34f}'                     // combining grapheme joiner
        | '\u{61c}'                     // Arabic letter mark (bidi)
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' // Hangul fillers: blank
        | '\u{17b4}' | '\u{17b5}'       // Khmer inherent vowels: invisible
        | '\u{180b}'..='\u{180f}'       // Mongolian variation selectors, vowel separator
        | '\u{200b}'..='\u{200f}'       // zero-width space, joiners, LRM, RLM
        | '\u{202a}'..='\u{202e}'       // bidi embeddings and overrides
        | '\u{2060}'..='\u{206f}'       // word joiner, invisible operators, bidi isolates
        | '\u{feff}'                    // zero-width no-break space (BOM)
        | '\u{fff9}'..='\u{fffb}'       // interlinear annotation
        | '\u{e0000}'..='\u{e007f}'     // tags
    ) || (c.is_whitespace() && c != ' ')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    Word,
    Csv,
}

fn escape(bytes: &[u8], mode: Mode) -> String {
    if mode == Mode::Word {
        match bytes {
            b"" => return "\"\"".to_owned(),
            b"-" => return "\\x2d".to_owned(),
            _ => {}
        }
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let first = out.is_empty();
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                ' ' | '"' if mode == Mode::Word => push_byte(&mut out, c as u8),
                '=' | '+' | '-' | '@' if mode == Mode::Csv && first => push_byte(&mut out, c as u8),
                c if c.is_ascii_control() => push_byte(&mut out, c as u8),
                c if is_unsafe(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            push_byte(&mut out, b);
        }
    }
    out
}

fn push_byte(out: &mut String, b: u8) {
    let _ = write!(out, "\\x{b:02x}");
}

/// Free text: every byte shown, no control reaches the terminal, the space stays.
pub fn text(bytes: &[u8]) -> String {
    escape(bytes, Mode::Text)
}

/// A value in a whitespace-separated column: as [`text`], and always one non-empty word that is
/// not `-`.
pub fn word(bytes: &[u8]) -> String {
    escape(bytes, Mode::Word)
}

/// A CSV field: as [`text`], and never taken for a spreadsheet formula.
pub fn csv_field(bytes: &[u8]) -> String {
    escape(bytes, Mode::Csv)
}

/// A file name, as free text.
pub fn path(p: &Path) -> String {
    text(p.as_os_str().as_bytes())
}

/// Bytes as lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The inverse of [`word`], for tests.
#[cfg(test)]
pub fn unescape_word(s: &str) -> Result<Vec<u8>, String> {
    if s == "\"\"" {
        return Ok(Vec::new());
    }
    unescape(s)
}

/// The inverse of [`text`] and [`csv_field`], for tests: the bytes the escaped text stands for.
#[cfg(test)]
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('\\') => out.push(b'\\'),
            Some('t') => out.push(b'\t'),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&h, 16).map_err(|e| format!("\\x{h}: {e}"))?);
            }
            Some('u') => {
                if chars.next() != Some('{') {
                    return Err("\\u without {".into());
                }
                let h: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = u32::from_str_radix(&h, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or(format!("\\u{{{h}}}"))?;
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).as_bytes());
            }
            other => return Err(format!("\\{other:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The name of issue #16: ESC [ 2 J " a , b LF 0xff 0xfe.
    const HOSTILE: &[u8] = b"\x1b[2J\"a,b\n\xff\xfe";

    #[test]
    fn controls_and_invalid_bytes_are_escaped_visibly() {
        assert_eq!(text(HOSTILE), r#"\x1b[2J"a,b\n\xff\xfe"#);
        assert_eq!(word(HOSTILE), r"\x1b[2J\x22a,b\n\xff\xfe");
        assert_eq!(csv_field(HOSTILE), r#"\x1b[2J"a,b\n\xff\xfe"#);
        assert_eq!(text(b"a\\x1b"), r"a\\x1b", "a backslash is escaped itself");
        assert_eq!(text(b"\t\r\x7f\0"), r"\t\r\x7f\x00");
        assert_eq!(text("\u{9b}31m".as_bytes()), r"\u{9b}31m", "C1 CSI");
        assert_eq!(
            text("abc\u{202e}gpj.exe".as_bytes()),
            r"abc\u{202e}gpj.exe",
            "right-to-left override"
        );
        assert_eq!(text("x\u{2066}y\u{2069}".as_bytes()), r"x\u{2066}y\u{2069}");
        assert_eq!(text("cu\u{200b}rl".as_bytes()), r"cu\u{200b}rl");
        assert_eq!(text("a\u{2028}b".as_bytes()), r"a\u{2028}b");
        assert_eq!(
            text("café 名前".as_bytes()),
            "café 名前",
            "printable UTF-8 stays"
        );
        // Valid UTF-8 U+00FF is a character, not the byte 0xff.
        assert_eq!(text("\u{ff}".as_bytes()), "\u{ff}");
    }

    #[test]
    fn a_column_is_one_word() {
        assert_eq!(word(b"a b"), r"a\x20b");
        assert_eq!(word("a\u{a0}b".as_bytes()), r"a\u{a0}b");
        assert_eq!(word(b""), r#""""#);
        assert_eq!(word(b"\"\""), r"\x22\x22");
        assert_eq!(word(b"-"), r"\x2d");
        assert_eq!(word(b"-x"), "-x");
        assert_eq!(text(b"a b"), "a b", "free text keeps its spaces");
    }

    #[test]
    fn csv_fields_are_never_formulas() {
        assert_eq!(csv_field(b"=1+2"), r"\x3d1+2");
        assert_eq!(csv_field(b"+1"), r"\x2b1");
        assert_eq!(csv_field(b"-1"), r"\x2d1");
        assert_eq!(csv_field(b"@SUM(A1)"), r"\x40SUM(A1)");
        assert_eq!(csv_field(b"a=b"), "a=b");
        assert_eq!(csv_field(b"\t=x"), r"\t=x", "a tab is escaped anyway");
    }

    #[test]
    fn names_end_at_the_nul() {
        assert_eq!(until_nul(b"curl\0\0\0"), b"curl");
        assert_eq!(until_nul(b"0123456789abcdef"), b"0123456789abcdef");
        assert_eq!(until_nul(b"\0x"), b"");
    }

    proptest! {
        /// Any bytes at all: the escaped text holds no character a terminal acts on, and says
        /// exactly which bytes they were.
        #[test]
        fn escaping_is_safe_and_reversible(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for (s, column) in [(text(&bytes), false), (word(&bytes), true), (csv_field(&bytes), false)] {
                prop_assert!(!s.chars().any(is_unsafe), "{s:?}");
                let back = if column { unescape_word(&s) } else { unescape(&s) };
                prop_assert_eq!(back.unwrap(), bytes.clone(), "{}", s);
                if column {
                    prop_assert!(!s.is_empty() && !s.chars().any(char::is_whitespace) && s != "-");
                }
            }
        }

        /// Unicode text, not only random bytes (which are rarely valid UTF-8 beyond ASCII).
        #[test]
        fn escaping_unicode_is_safe_and_reversible(s in "\\PC*|[\\u{0}-\\u{3000}]{0,16}") {
            let e = text(s.as_bytes());
            prop_assert!(!e.chars().any(is_unsafe), "{e:?}");
            prop_assert_eq!(unescape(&e).unwrap(), s.as_bytes().to_vec());
        }
    }
}
