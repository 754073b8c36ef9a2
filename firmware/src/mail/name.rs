//! A domain name as the mail lookups use it: lower-cased, in DNS wire
//! form, ASCII only. It owns the conversion of a domain from a mail
//! address (which may carry Unicode labels under SMTPUTF8, RFC 6531) to
//! what goes in a DNS question: each non-ASCII label lower-cased and
//! encoded as an IDNA A-label (`xn--` and Punycode, RFC 3492). It does
//! not apply UTS #46's full mapping (NFC normalisation, the disallowed
//! code points): a domain typed in a decomposed form is looked up as it
//! is, and simply not found. It does no I/O.

use crate::dns::wire::{self, NameBuf};

/// A lower-cased, uncompressed wire name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(NameBuf);

/// Why a text is not a domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An empty or over-long label, or a name over 255 octets.
    #[error("{0:?} is not a domain name")]
    Malformed(String),
}

impl Name {
    /// An ASCII name (`mx.example.org`, final dot optional).
    pub fn from_ascii(text: &str) -> Result<Name, NameError> {
        if !text.is_ascii() {
            return Err(NameError::Malformed(text.to_string()));
        }
        wire::name_from_text(text)
            .map(Name)
            .map_err(|_| NameError::Malformed(text.to_string()))
    }

    /// A name that may hold Unicode labels: those become A-labels.
    pub fn from_utf8(text: &str) -> Result<Name, NameError> {
        if text.is_ascii() {
            return Name::from_ascii(text);
        }
        let bare = text.strip_suffix('.').unwrap_or(text);
        let mut ascii = String::with_capacity(bare.len() * 2);
        for (i, label) in bare.split('.').enumerate() {
            if i > 0 {
                ascii.push('.');
            }
            if label.is_ascii() {
                ascii.push_str(label);
            } else {
                ascii.push_str("xn--");
                punycode(&label.to_lowercase(), &mut ascii)
                    .ok_or_else(|| NameError::Malformed(text.to_string()))?;
            }
        }
        Name::from_ascii(&ascii).map_err(|_| NameError::Malformed(text.to_string()))
    }

    /// From a wire name read out of a message.
    pub fn from_wire(name: &[u8]) -> Name {
        let mut n = NameBuf::new();
        // Same capacity: cannot fail.
        let _ = n.extend_from_slice(name);
        n.make_ascii_lowercase();
        Name(n)
    }

    /// The wire form.
    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// Dotted text with the final dot (`mx.example.org.`; `.` for the
    /// root).
    pub fn to_ascii(&self) -> String {
        wire::name_to_text(&self.0)
    }

    /// The root name (a null MX's exchange, RFC 7505).
    pub fn is_root(&self) -> bool {
        self.0.as_slice() == [0]
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_ascii())
    }
}

/// Punycode (RFC 3492 section 6.3) of `label`, appended to `out`; `None`
/// on overflow (a label far longer than DNS allows).
fn punycode(label: &str, out: &mut String) -> Option<()> {
    const BASE: u32 = 36;
    const T_MIN: u32 = 1;
    const T_MAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    const INITIAL_BIAS: u32 = 72;
    const INITIAL_N: u32 = 128;
    fn digit(d: u32) -> char {
        (if d < 26 {
            b'a' + d as u8
        } else {
            b'0' + (d - 26) as u8
        }) as char
    }
    fn adapt(mut delta: u32, points: u32, first: bool) -> u32 {
        delta /= if first { DAMP } else { 2 };
        delta += delta / points;
        let mut k = 0;
        while delta > ((BASE - T_MIN) * T_MAX) / 2 {
            delta /= BASE - T_MIN;
            k += BASE;
        }
        k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
    }
    let input: Vec<u32> = label.chars().map(u32::from).collect();
    let basic = input.iter().filter(|&&c| c < 0x80).count() as u32;
    out.extend(
        input
            .iter()
            .filter(|&&c| c < 0x80)
            .map(|&c| c as u8 as char),
    );
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias, mut h) = (INITIAL_N, 0u32, INITIAL_BIAS, basic);
    let len = input.len() as u32;
    while h < len {
        let m = input.iter().copied().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(h + 1)?)?;
        n = m;
        for &c in &input {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        T_MIN
                    } else if k >= bias + T_MAX {
                        T_MAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, h + 1, h == basic);
                delta = 0;
                h += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n = n.checked_add(1)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_names_are_lower_cased_wire_names() {
        let n = Name::from_ascii("MX1.Example.ORG").unwrap();
        assert_eq!(n.to_ascii(), "mx1.example.org.");
        assert_eq!(n.wire(), b"\x03mx1\x07example\x03org\x00");
        assert_eq!(Name::from_ascii("mx1.example.org.").unwrap(), n);
        assert!(Name::from_ascii(".").unwrap().is_root());
        assert!(!n.is_root());
        assert!(Name::from_ascii("a..b").is_err());
        assert!(Name::from_ascii(&"a".repeat(64)).is_err());
        assert!(Name::from_ascii(&["abc"; 70].join(".")).is_err());
        assert!(Name::from_ascii("bücher.example").is_err());
    }

    /// RFC 3492 section 7.1's samples, and A-labels other IDNA
    /// implementations give (Python's `encodings.idna`, browsers).
    #[test]
    fn unicode_labels_become_a_labels() {
        let cases = [
            ("bücher.example", "xn--bcher-kva.example."),
            ("Bücher.Example.", "xn--bcher-kva.example."),
            ("münchen.de", "xn--mnchen-3ya.de."),
            ("例え.テスト", "xn--r8jz45g.xn--zckzah."),
            ("пример.испытание", "xn--e1afmkfd.xn--80akhbyknj4f."),
            ("ليهمابتكلموشعربي؟", "xn--egbpdaj6bu4bxfgehfvwxn."),
            ("他们为什么不说中文", "xn--ihqwcrb4cv8a8dqg056pqjye."),
            (
                "Pročprostěnemluvíčesky",
                "xn--proprostnemluvesky-uyb24dma41a.",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Name::from_utf8(text).unwrap().to_ascii(), want, "{text}");
        }
        assert_eq!(
            Name::from_utf8("plain.example").unwrap().to_ascii(),
            "plain.example."
        );
        // Still bounded by DNS's label length once encoded.
        assert!(Name::from_utf8(&"ü".repeat(60)).is_err());
    }

    #[test]
    fn wire_names_read_from_messages_are_lower_cased() {
        let n = Name::from_wire(b"\x02MX\x04Test\x00");
        assert_eq!(n.to_ascii(), "mx.test.");
        assert_eq!(n, Name::from_ascii("mx.test").unwrap());
    }
}
