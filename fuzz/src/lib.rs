//! Helpers shared by the fuzz targets: a reader that takes decisions and
//! numbers from the front of libFuzzer's input, and a few checks used by
//! more than one target. Nothing here is part of the firmware.

/// Takes values from the front of a fuzz input; once it is used up,
/// every value is zero (so any input is a valid script).
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.data.split_first() else {
            return 0;
        };
        self.data = rest;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) << 32 | self.u32() as u64
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// Splits `data` at each occurrence of `sep` (a multi-byte separator
/// the mutator can insert, so that one input can describe several
/// chunks, segments or files).
pub fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}

/// A fresh, empty scratch directory for one run (tmpfs when there is
/// one), removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            std::path::PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("pocobelle-fuzz-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch directory");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks the reply lines an SMTP server wrote: each ends in CRLF, fits
/// RFC 5321's 512 octets, starts with three digits and a space or dash,
/// and the lines of one reply share their code.
pub fn check_smtp_replies(out: &[u8]) {
    let mut code: Option<&[u8]> = None;
    let mut rest = out;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("reply line without CRLF: {rest:?}"));
        let line = &rest[..end];
        rest = &rest[end + 2..];
        assert!(
            line.len() + 2 <= 512,
            "reply line of {} octets",
            line.len() + 2
        );
        assert!(
            !line.contains(&b'\r') && !line.contains(&b'\n'),
            "CR or LF inside a reply line: {line:?}"
        );
        assert!(line.len() >= 4, "short reply line {line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit), "{line:?}");
        assert!(matches!(line[0], b'2'..=b'5'), "{line:?}");
        if let Some(c) = code {
            assert_eq!(c, &line[..3], "codes differ within one reply");
        }
        match line[3] {
            b'-' => code = Some(&line[..3]),
            b' ' => code = None,
            other => panic!("reply line separator {other:#x}: {line:?}"),
        }
    }
    assert!(code.is_none(), "multi-line reply without its last line");
}
