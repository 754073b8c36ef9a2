//! Maps byte offsets and dotted keys back to line numbers in the source
//! text, so that every configuration error can name its line.

/// The 1-based line that byte `offset` of `text` lies on.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line where the dotted `key` (e.g. `dns.cache_bytes` or
/// `dns.hosts[2].name`) is written, or where its nearest written ancestor
/// is, when the key was left to its default.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut best = None;
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
            break;
        };
        best = Some(line_of(text, k.span().start));
        let mut value = v.get_ref();
        if let (Some(i), toml::de::DeValue::Array(items)) = (index, value) {
            match items.get(i) {
                Some(item) => {
                    best = Some(line_of(text, item.span().start));
                    value = item.get_ref();
                }
                None => break,
            }
        }
        match value {
            toml::de::DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }

    #[test]
    fn finds_nested_keys_and_array_items() {
        let text = "[a]\nx = 1\n\n[[a.list]]\nname = \"p\"\n[[a.list]]\nname = \"q\"\n";
        assert_eq!(line_of_key(text, "a.x"), Some(2));
        assert_eq!(line_of_key(text, "a.list[1].name"), Some(7));
        assert_eq!(line_of_key(text, "a.missing"), Some(1));
        assert_eq!(line_of_key(text, "b"), None);
    }
}
