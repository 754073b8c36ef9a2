//! The tag=value lists of DKIM (RFC 6376 3.2), also the syntax of DMARC
//! records (RFC 7489 6.4): a checked view over outside bytes. It owns the
//! syntax only (names, values, duplicates, the bound on tag count); what a
//! tag means is the caller's business. No allocation beyond the bounded
//! list of tags.

use std::ops::Range;

/// At most this many tags in one list (a DKIM-Signature has 13 defined,
/// a key record 7, a DMARC record 11); more is a typed error.
pub const MAX_TAGS: usize = 32;

/// One tag: its name, its value with surrounding whitespace removed
/// (inner folding whitespace is kept), and where the value lies in the
/// input with its surrounding whitespace (DKIM's b= blanking removes
/// exactly that, RFC 6376 3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub span: Range<usize>,
}

/// Why a tag list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// A tag has no `=`, an empty or invalid name, or a value with a
    /// character outside VALCHAR and whitespace.
    #[error("malformed tag-list")]
    Syntax,
    /// The same tag name appears twice (RFC 6376 3.2: an error).
    #[error("duplicate tag")]
    Duplicate,
    /// More than [`MAX_TAGS`] tags.
    #[error("more than {MAX_TAGS} tags")]
    TooMany,
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Parses `input` as a tag-list. A trailing `;` is allowed; an empty
/// tag-spec elsewhere is not.
pub fn parse(input: &[u8]) -> Result<Vec<Tag<'_>>, TagError> {
    let mut tags: Vec<Tag<'_>> = Vec::new();
    let mut start = 0;
    let n = input.len();
    while start <= n {
        let end = input[start..]
            .iter()
            .position(|&c| c == b';')
            .map_or(n, |p| start + p);
        let spec = &input[start..end];
        if spec.iter().all(|&c| is_ws(c)) {
            // Only the last spec may be empty (after a trailing `;`),
            // and a list of nothing at all is empty.
            if end != n {
                return Err(TagError::Syntax);
            }
            break;
        }
        let eq = spec
            .iter()
            .position(|&c| c == b'=')
            .ok_or(TagError::Syntax)?;
        let name = trim(spec, 0..eq);
        let name_bytes = &spec[name.clone()];
        let ok_name = name_bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && name_bytes
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_');
        if !ok_name {
            return Err(TagError::Syntax);
        }
        let value = trim(spec, eq + 1..spec.len());
        if spec[value.clone()]
            .iter()
            .any(|&c| !(is_ws(c) || (0x21..=0x7e).contains(&c)))
        {
            return Err(TagError::Syntax);
        }
        // ASCII was checked above, so both slices are valid UTF-8.
        let name = std::str::from_utf8(name_bytes).map_err(|_| TagError::Syntax)?;
        let value_str = std::str::from_utf8(&spec[value.clone()]).map_err(|_| TagError::Syntax)?;
        if tags.iter().any(|t| t.name == name) {
            return Err(TagError::Duplicate);
        }
        if tags.len() == MAX_TAGS {
            return Err(TagError::TooMany);
        }
        tags.push(Tag {
            name,
            value: value_str,
            span: start + eq + 1..end,
        });
        start = end + 1;
    }
    Ok(tags)
}

fn trim(s: &[u8], mut r: Range<usize>) -> Range<usize> {
    while r.start < r.end && is_ws(s[r.start]) {
        r.start += 1;
    }
    while r.end > r.start && is_ws(s[r.end - 1]) {
        r.end -= 1;
    }
    r
}

/// The value of tag `name`, if present.
pub fn get<'a>(tags: &[Tag<'a>], name: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.name == name).map(|t| t.value)
}

/// `value` without any whitespace (base64 values may be folded).
pub fn squeeze(value: &str) -> String {
    value.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_spans_and_trailing_semicolon() {
        let input = b" v=1; a = rsa-sha256 ;\r\n b=ab\r\n cd;";
        assert_eq!(
            &input[parse(input).unwrap()[1].span.clone()],
            b" rsa-sha256 "
        );
        let t = parse(input).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!((t[1].name, t[1].value), ("a", "rsa-sha256"));
        assert_eq!(t[2].value, "ab\r\n cd");
        assert_eq!(&input[t[2].span.clone()], b"ab\r\n cd");
        assert_eq!(squeeze(t[2].value), "abcd");
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b"a=").unwrap()[0].value, "");
    }

    #[test]
    fn refuses_duplicates_bad_names_and_empty_specs() {
        assert_eq!(parse(b"a=1; a=2"), Err(TagError::Duplicate));
        assert_eq!(parse(b"1a=1"), Err(TagError::Syntax));
        assert_eq!(parse(b"a=1;; b=2"), Err(TagError::Syntax));
        assert_eq!(parse(b"novalue"), Err(TagError::Syntax));
        assert_eq!(parse("a=\u{e9}".as_bytes()), Err(TagError::Syntax));
        let many: String = (0..=MAX_TAGS).map(|i| format!("t{i}=x;")).collect();
        assert_eq!(parse(many.as_bytes()), Err(TagError::TooMany));
    }
}
