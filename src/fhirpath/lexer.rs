//! Tokeniser for FHIRPath source text. Owns the token shapes and the byte
//! offsets every later error position is computed from.

use std::sync::Arc;

use super::ParseError;

/// One lexical token and where it starts (byte offset into the source).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: Tok,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Number text as written: the parser decides Integer vs Decimal.
    Number(Arc<str>),
    Str(Arc<str>),
    /// Plain identifier (may also be a keyword such as `and`, `div`, `true`).
    Ident(Arc<str>),
    /// Backtick-delimited identifier: never a keyword.
    Delimited(Arc<str>),
    /// `@...` literal body without the `@`.
    DateTime(Arc<str>),
    /// `%name` or `%`name``.
    Var(Arc<str>),
    /// `$this`, `$index`, `$total`.
    Special(Arc<str>),
    Sym(&'static str),
    Eof,
}

const SYMBOLS: &[&str] = &[
    "!=", "!~", "<=", ">=", ".", ",", "(", ")", "[", "]", "{", "}", "+", "-", "*", "/", "&", "|",
    "=", "~", "<", ">",
];

pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Comments: `//` to end of line and `/* ... */`.
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= bytes.len() {
                    return Err(ParseError::at(src, start, "unterminated comment"));
                }
                if bytes[i] == b'*' && bytes[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let start = i;
        let kind = if c.is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            // A dot only belongs to the number when a digit follows, so that
            // `1.toString()` is an invocation on the integer 1.
            if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
            }
            Tok::Number(src[start..i].into())
        } else if c == b'\'' {
            let (s, end) = quoted(src, i, b'\'')?;
            i = end;
            Tok::Str(s.into())
        } else if c == b'`' {
            let (s, end) = quoted(src, i, b'`')?;
            i = end;
            Tok::Delimited(s.into())
        } else if c.is_ascii_alphabetic() || c == b'_' {
            i = ident_end(bytes, i);
            Tok::Ident(src[start..i].into())
        } else if c == b'%' {
            i += 1;
            if bytes.get(i) == Some(&b'`') {
                let (s, end) = quoted(src, i, b'`')?;
                i = end;
                Tok::Var(s.into())
            } else if bytes.get(i) == Some(&b'\'') {
                let (s, end) = quoted(src, i, b'\'')?;
                i = end;
                Tok::Var(s.into())
            } else if bytes
                .get(i)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            {
                let s = i;
                i = ident_end(bytes, i);
                Tok::Var(src[s..i].into())
            } else {
                return Err(ParseError::at(
                    src,
                    start,
                    "expected a variable name after '%'",
                ));
            }
        } else if c == b'$' {
            i += 1;
            let s = i;
            i = ident_end(bytes, i);
            let name = &src[s..i];
            if !matches!(name, "this" | "index" | "total") {
                return Err(ParseError::at(
                    src,
                    start,
                    format!("unknown special variable '${name}'"),
                ));
            }
            Tok::Special(name.into())
        } else if c == b'@' {
            i += 1;
            let end = datetime_end(src, i)?;
            if end == i {
                return Err(ParseError::at(
                    src,
                    start,
                    "expected a date or time after '@'",
                ));
            }
            let body = &src[i..end];
            i = end;
            Tok::DateTime(body.into())
        } else {
            let rest = &src[i..];
            match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
                Some(s) => {
                    i += s.len();
                    Tok::Sym(s)
                }
                None => {
                    let ch = rest.chars().next().unwrap_or('?');
                    return Err(ParseError::at(
                        src,
                        start,
                        format!("unexpected character '{ch}'"),
                    ));
                }
            }
        };
        out.push(Token {
            kind,
            offset: start,
        });
    }
    out.push(Token {
        kind: Tok::Eof,
        offset: src.len(),
    });
    Ok(out)
}

fn ident_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    i
}

/// Reads a quoted string or delimited identifier starting at `start` (the
/// opening quote); returns the unescaped text and the offset after the close.
fn quoted(src: &str, start: usize, quote: u8) -> Result<(String, usize), ParseError> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((rel, ch)) = chars.next() {
        let pos = start + 1 + rel;
        if ch as u32 == quote as u32 {
            return Ok((out, pos + 1));
        }
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        let Some((_, esc)) = chars.next() else { break };
        match esc {
            '\'' | '"' | '`' | '\\' | '/' => out.push(esc),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let mut code = 0u32;
                for _ in 0..4 {
                    match chars.next().and_then(|(_, h)| h.to_digit(16)) {
                        Some(d) => code = code * 16 + d,
                        None => {
                            return Err(ParseError::at(
                                src,
                                pos,
                                "invalid unicode escape: expected four hex digits after \\u",
                            ));
                        }
                    }
                }
                match char::from_u32(code) {
                    Some(c) => out.push(c),
                    None => return Err(ParseError::at(src, pos, "invalid unicode escape")),
                }
            }
            other => {
                return Err(ParseError::at(
                    src,
                    pos,
                    format!("invalid escape '\\{other}'"),
                ));
            }
        }
    }
    let what = if quote == b'`' {
        "unterminated delimited identifier"
    } else {
        "unterminated string"
    };
    Err(ParseError::at(src, start, what))
}

/// Scans the body of an `@` literal; validates it with the temporal parser so
/// malformed literals are reported where they start.
fn datetime_end(src: &str, start: usize) -> Result<usize, ParseError> {
    let bytes = src.as_bytes();
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        let ok = b.is_ascii_digit()
            || b == b'T'
            || b == b':'
            || b == b'Z'
            || (b == b'-' && i > start && !bytes[i - 1].is_ascii_whitespace())
            || (b == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
            || (b == b'+' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        if !ok {
            break;
        }
        // `-`/`+` after a time part is a zone offset only if `dd:dd` follows.
        if (b == b'-' || b == b'+') && src[start..i].contains('T') {
            let zone = bytes.get(i + 1..i + 6);
            let is_zone = zone.is_some_and(|z| {
                z[0].is_ascii_digit()
                    && z[1].is_ascii_digit()
                    && z[2] == b':'
                    && z[3].is_ascii_digit()
            });
            if !is_zone {
                break;
            }
        }
        i += 1;
    }
    let body = &src[start..i];
    if super::value::Temporal::parse_literal(body).is_none() {
        return Err(ParseError::at(
            src,
            start - 1,
            format!("invalid date/time literal '@{body}'"),
        ));
    }
    Ok(i)
}
