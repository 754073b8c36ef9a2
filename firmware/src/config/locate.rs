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

/// The dotted key (as [`line_of_key`] reads it: `dns.hosts[2].name`) whose
/// name or value holds byte `offset` of the parsed `table`: the innermost
/// one. Serde's errors come with the span of what they refused; this turns
/// it back into the key a user wrote, without wrapping every visitor of
/// the schema to record the path as it goes (serde_path_to_error did, at
/// the cost of a second copy of each struct's reader).
pub fn key_at(table: &toml::de::DeTable<'_>, offset: usize) -> String {
    let mut path = String::new();
    find_key(table, offset, &mut path);
    path
}

/// Appends to `path` the key of `table` holding `offset`; false when none
/// does. A table opened by a `[header]` spans only its header, so tables
/// are searched whatever their span.
fn find_key(table: &toml::de::DeTable<'_>, offset: usize, path: &mut String) -> bool {
    use toml::de::DeValue;
    let mark = path.len();
    for (k, v) in table.iter() {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k.get_ref().as_ref());
        if k.span().contains(&offset) {
            return true;
        }
        match v.get_ref() {
            DeValue::Table(t) if find_key(t, offset, path) => return true,
            DeValue::Array(items) => {
                let item_mark = path.len();
                for (i, item) in items.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    let found = match item.get_ref() {
                        DeValue::Table(t) => find_key(t, offset, path),
                        _ => false,
                    };
                    if found || item.span().contains(&offset) {
                        return true;
                    }
                    path.truncate(item_mark);
                }
            }
            _ => {}
        }
        if v.span().contains(&offset) {
            return true;
        }
        path.truncate(mark);
    }
    false
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

    #[test]
    fn key_at_names_the_innermost_key() {
        let text =
            "[a]\nx = 1\n\n[[a.list]]\nname = \"p\"\n[[a.list]]\nname = \"q\"\ny = { z = 3 }\n";
        let t = toml::de::DeTable::parse(text).unwrap();
        let at = |needle: &str| key_at(t.get_ref(), text.find(needle).unwrap());
        assert_eq!(at("1"), "a.x");
        assert_eq!(at("\"q\""), "a.list[1].name");
        assert_eq!(at("z ="), "a.list[1].y.z");
        assert_eq!(at("3"), "a.list[1].y.z");
        assert_eq!(key_at(t.get_ref(), text.len() + 5), "");
    }
}
