//! DKIM canonicalization (RFC 6376 3.4): the header fields of a message
//! split out of its header section, the `simple` and `relaxed` forms of a
//! header field, and a streaming body hasher fed in chunks of any size,
//! holding only a counter of withheld empty lines (never the body).

use ring::digest;

/// A canonicalization algorithm, for the header or the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    Simple,
    Relaxed,
}

/// One header field of a header section: its name (as written) and the
/// whole field including the name and the final line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// The part after the colon, without the final line break.
    pub fn value(&self) -> &[u8] {
        let v = &self.raw[self.name.len() + 1..];
        v.strip_suffix(b"\r\n")
            .or_else(|| v.strip_suffix(b"\n"))
            .unwrap_or(v)
    }

    pub fn is(&self, name: &str) -> bool {
        trim_end_ws(self.name).eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The fields of a header section (without the empty line that ends it),
/// top to bottom. A line that is neither a field nor a continuation is
/// skipped; it cannot be signed.
pub fn fields(section: &[u8]) -> Vec<Field<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < section.len() {
        // A field runs to the line break not followed by a continuation.
        let mut end = i;
        loop {
            match section[end..].iter().position(|&c| c == b'\n') {
                Some(p) => end += p + 1,
                None => {
                    end = section.len();
                    break;
                }
            }
            if !matches!(section.get(end), Some(b' ' | b'\t')) {
                break;
            }
        }
        let raw = &section[i..end];
        if let Some(colon) = raw.iter().position(|&c| c == b':') {
            let name = &raw[..colon];
            if !trim_end_ws(name).is_empty() && !name.contains(&b'\n') {
                out.push(Field { name, raw });
            }
        }
        i = end;
    }
    out
}

fn trim_end_ws(s: &[u8]) -> &[u8] {
    let n = s.len() - s.iter().rev().take_while(|c| is_wsp(**c)).count();
    &s[..n]
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Appends `field` in canonical form with its line break (RFC 6376
/// 3.4.1, 3.4.2). `value` replaces the field's value when given (the
/// DKIM-Signature with b= emptied).
pub fn header(canon: Canon, field: &Field<'_>, out: &mut Vec<u8>) {
    match canon {
        Canon::Simple => {
            out.extend_from_slice(field.raw);
            if !field.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        Canon::Relaxed => {
            relaxed_header(field.name, field.value(), out);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The relaxed form of `name: value`, without the line break: the name in
/// lower case, line breaks removed, runs of whitespace as one space, no
/// whitespace at the ends of the value or around the colon.
pub fn relaxed_header(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend(trim_end_ws(name).iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let mut space = false;
    let mut started = false;
    for &c in value {
        match c {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = true,
            _ => {
                if space && started {
                    out.push(b' ');
                }
                space = false;
                started = true;
                out.push(c);
            }
        }
    }
}

/// Size of the staging buffer between the canonicalizer and SHA-256.
const STAGE: usize = 512;

/// The body hash of one signature, fed the body in chunks. `limit` is the
/// signature's l= (octets of canonical body to hash).
pub struct BodyHasher {
    canon: Canon,
    ctx: digest::Context,
    limit: Option<u64>,
    hashed: u64,
    /// Empty lines seen and not yet known to be followed by content.
    empty_lines: u64,
    /// A CR was the last byte (a line break if LF follows).
    cr: bool,
    /// Whitespace was seen and not yet written (relaxed).
    wsp: bool,
    /// The current line has content.
    line: bool,
    stage: Vec<u8>,
}

impl BodyHasher {
    pub fn new(canon: Canon, limit: Option<u64>) -> BodyHasher {
        BodyHasher {
            canon,
            ctx: digest::Context::new(&digest::SHA256),
            limit,
            hashed: 0,
            empty_lines: 0,
            cr: false,
            wsp: false,
            line: false,
            stage: Vec::with_capacity(STAGE),
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.stage.extend_from_slice(bytes);
        if self.stage.len() >= STAGE {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let mut take = self.stage.len() as u64;
        if let Some(l) = self.limit {
            take = take.min(l.saturating_sub(self.hashed));
        }
        self.ctx.update(&self.stage[..take as usize]);
        // Count all canonical octets, hashed or not: l= longer than the
        // canonical body is detected at the end.
        self.hashed += self.stage.len() as u64;
        self.stage.clear();
    }

    fn content(&mut self, c: u8) {
        if self.canon == Canon::Relaxed && is_wsp(c) {
            self.wsp = true;
            return;
        }
        while self.empty_lines > 0 {
            self.empty_lines -= 1;
            self.emit(b"\r\n");
        }
        if self.wsp {
            self.wsp = false;
            self.emit(b" ");
        }
        self.line = true;
        self.emit(&[c]);
    }

    fn line_end(&mut self) {
        self.wsp = false;
        if self.line {
            self.emit(b"\r\n");
            self.line = false;
        } else {
            self.empty_lines += 1;
        }
    }

    /// Feeds the next bytes of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        for &c in chunk {
            if self.cr {
                self.cr = false;
                if c == b'\n' {
                    self.line_end();
                    continue;
                }
                self.content(b'\r');
            }
            if c == b'\r' {
                self.cr = true;
            } else {
                self.content(c);
            }
        }
    }

    /// The body hash, and whether l= (if any) fit in the canonical body.
    pub fn finish(mut self) -> (digest::Digest, bool) {
        if self.cr {
            self.cr = false;
            self.content(b'\r');
        }
        if self.line {
            self.line_end();
        }
        if self.canon == Canon::Simple && self.hashed == 0 && self.stage.is_empty() {
            // An empty simple body is one CRLF (RFC 6376 3.4.3).
            self.emit(b"\r\n");
        }
        self.flush();
        let fits = self.limit.is_none_or(|l| l <= self.hashed);
        (self.ctx.finish(), fits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical form of `chunks` is `expected` (compared by hash).
    fn canon_body(canon: Canon, chunks: &[&[u8]], expected: &[u8]) {
        let mut h = BodyHasher::new(canon, None);
        for c in chunks {
            h.update(c);
        }
        let want = digest::digest(&digest::SHA256, expected);
        assert_eq!(h.finish().0.as_ref(), want.as_ref(), "{chunks:?}");
    }

    fn b64_hash(canon: Canon, body: &[u8]) -> String {
        let mut h = BodyHasher::new(canon, None);
        h.update(body);
        crate::smtp::auth::base64_encode(h.finish().0.as_ref())
    }

    #[test]
    fn simple_body() {
        let s = Canon::Simple;
        canon_body(s, &[b""], b"\r\n");
        canon_body(s, &[b"\r\n\r\n"], b"\r\n");
        canon_body(s, &[b"a \r\n\r\n", b"\r\n"], b"a \r\n");
        canon_body(s, &[b"a\r", b"\n\r\nb\r\n\r\n"], b"a\r\n\r\nb\r\n");
        canon_body(s, &[b"a"], b"a\r\n");
        // RFC 6376 3.4.5: empty body hashes.
        assert_eq!(
            b64_hash(s, b""),
            "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY="
        );
        assert_eq!(
            b64_hash(Canon::Relaxed, b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn relaxed_body() {
        let r = Canon::Relaxed;
        canon_body(r, &[b" C \r\nD \t E\r\n\r\n\r\n"], b" C\r\nD E\r\n");
        canon_body(r, &[b"a\r\n \t\r\nb", b"\r\n  \r\n"], b"a\r\n\r\nb\r\n");
        canon_body(r, &[b"\r\n \r\n"], b"");
        canon_body(r, &[b"x\ry\r\n"], b"x\ry\r\n");
    }

    #[test]
    fn chunking_does_not_change_the_hash() {
        let body: &[u8] = b"Hi.\r\n\r\nWe lost  the game. \r\n \r\n\r\nJoe.\r\n\r\n";
        for canon in [Canon::Simple, Canon::Relaxed] {
            let whole = b64_hash(canon, body);
            for cut in 0..body.len() {
                let mut h = BodyHasher::new(canon, None);
                h.update(&body[..cut]);
                h.update(&body[cut..]);
                assert_eq!(
                    crate::smtp::auth::base64_encode(h.finish().0.as_ref()),
                    whole
                );
            }
        }
    }

    #[test]
    fn length_limit() {
        let mut h = BodyHasher::new(Canon::Simple, Some(3));
        h.update(b"abcdef\r\n");
        let (d, fits) = h.finish();
        assert!(fits);
        assert_eq!(d.as_ref(), digest::digest(&digest::SHA256, b"abc").as_ref());
        let mut h = BodyHasher::new(Canon::Simple, Some(100));
        h.update(b"abc\r\n");
        assert!(!h.finish().1);
    }

    #[test]
    fn headers() {
        let section = b"Subject:  Is  dinner\r\n\tready? \r\nFrom : Joe\r\nX: y\r\n";
        let f = fields(section);
        assert_eq!(f.len(), 3);
        assert!(f[1].is("from"));
        let mut out = Vec::new();
        header(Canon::Relaxed, &f[0], &mut out);
        header(Canon::Relaxed, &f[1], &mut out);
        assert_eq!(out, b"subject:Is dinner ready?\r\nfrom:Joe\r\n");
        out.clear();
        header(Canon::Simple, &f[0], &mut out);
        assert_eq!(out, b"Subject:  Is  dinner\r\n\tready? \r\n");
    }
}
