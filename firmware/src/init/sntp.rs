//! SNTP (RFC 4330) without I/O: the 48-byte client request, the checks
//! a server reply must pass (RFC 4330 section 5: leap indicator 3 means
//! the server is unsynchronised, stratum 0 is a kiss-o'-death, a zero
//! transmit timestamp or an originate timestamp that is not ours is
//! refused), the clock offset and round-trip delay from the four
//! timestamps, and the decision to step or slew. Time is passed in; the
//! caller (the `sntp` applet) owns sockets and the clock. Differences of
//! NTP timestamps are taken modulo 2^64, so the 2036 era rollover is
//! harmless as long as the clock is within 68 years of the truth.

use std::time::Duration;

/// Size of an SNTP packet without extensions.
pub const PACKET_LEN: usize = 48;
/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// A reply whose round trip took longer than this is not trusted.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Highest usable stratum (16 means unsynchronised).
pub const MAX_STRATUM: u8 = 15;

/// An NTP timestamp: seconds since 1900 in the high 32 bits, fraction in
/// the low 32 (the era is implied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// From Unix time (seconds and nanoseconds).
    pub fn from_unix(secs: u64, nanos: u32) -> NtpTime {
        let s = secs.wrapping_add(NTP_UNIX_OFFSET) & 0xffff_ffff;
        let frac = ((nanos as u64) << 32) / 1_000_000_000;
        NtpTime((s << 32) | frac)
    }

    /// `self - earlier` in nanoseconds (signed, modulo the era; 64-bit
    /// nanoseconds hold the ±68 years an NTP difference can express).
    pub fn diff_ns(self, earlier: NtpTime) -> i64 {
        let d = self.0.wrapping_sub(earlier.0) as i64;
        let secs = d >> 32;
        let frac = d & 0xffff_ffff;
        secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
    }
}

/// The request: LI 0, version 4, mode 3 (client), our transmit time.
/// The server copies it to the originate field of its reply, which is how
/// a reply is matched to this request.
pub fn request(t1: NtpTime) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = 4 << 3 | 3;
    p[40..48].copy_from_slice(&t1.0.to_be_bytes());
    p
}

/// Why a reply is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SntpError {
    #[error("reply of {0} bytes, shorter than {PACKET_LEN}")]
    Short(usize),
    #[error("not a server reply (mode {0})")]
    NotServer(u8),
    #[error("unsupported NTP version {0}")]
    Version(u8),
    #[error("the server is not synchronised (leap indicator 3)")]
    Unsynchronised,
    #[error("kiss-o'-death from the server (stratum 0, code {0:?})")]
    KissOfDeath(String),
    #[error("stratum {0} is above {MAX_STRATUM}")]
    Stratum(u8),
    #[error("the originate timestamp is not our request's: a stale or forged reply")]
    OriginMismatch,
    #[error("the server sent a zero transmit timestamp")]
    ZeroTransmit,
    #[error("round trip of {0} ms is too long to trust")]
    Delay(i64),
}

/// What a good reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// How far our clock is behind the server's (positive: ours is slow),
    /// in nanoseconds.
    pub offset_ns: i64,
    /// Round-trip delay minus the server's processing time, nanoseconds.
    pub delay_ns: i64,
    pub stratum: u8,
}

fn ts(p: &[u8], at: usize) -> NtpTime {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[at..at + 8]);
    NtpTime(u64::from_be_bytes(b))
}

/// Checks a reply to the request sent at `t1`, received at `t4`.
pub fn parse_reply(p: &[u8], t1: NtpTime, t4: NtpTime) -> Result<Sample, SntpError> {
    if p.len() < PACKET_LEN {
        return Err(SntpError::Short(p.len()));
    }
    let li = p[0] >> 6;
    let vn = (p[0] >> 3) & 7;
    let mode = p[0] & 7;
    if mode != 4 {
        return Err(SntpError::NotServer(mode));
    }
    if !(3..=4).contains(&vn) {
        return Err(SntpError::Version(vn));
    }
    let stratum = p[1];
    if stratum == 0 {
        let code: String = p[12..16]
            .iter()
            .filter(|b| b.is_ascii_graphic())
            .map(|&b| b as char)
            .collect();
        return Err(SntpError::KissOfDeath(code));
    }
    if li == 3 {
        return Err(SntpError::Unsynchronised);
    }
    if stratum > MAX_STRATUM {
        return Err(SntpError::Stratum(stratum));
    }
    let (t0, t2, t3) = (ts(p, 24), ts(p, 32), ts(p, 40));
    if t0 != t1 {
        return Err(SntpError::OriginMismatch);
    }
    if t3.0 == 0 {
        return Err(SntpError::ZeroTransmit);
    }
    let offset_ns = (t2.diff_ns(t1) + t3.diff_ns(t4)) / 2;
    let delay_ns = t4.diff_ns(t1) - t3.diff_ns(t2);
    if delay_ns > MAX_DELAY.as_nanos() as i64 {
        return Err(SntpError::Delay(delay_ns / 1_000_000));
    }
    Ok(Sample {
        offset_ns,
        delay_ns: delay_ns.max(0),
        stratum,
    })
}

/// What to do with the clock for an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// Set the clock (clock_settime) to now + offset.
    Step,
    /// Let the kernel slew it gradually (adjtime).
    Slew,
}

/// Step when the offset is at least `step_threshold`, slew otherwise.
pub fn correction(offset_ns: i64, step_threshold: Duration) -> Correction {
    if offset_ns.unsigned_abs() as u128 >= step_threshold.as_nanos() {
        Correction::Step
    } else {
        Correction::Slew
    }
}

/// A server reply for tests and the fake server: answers `req` as a
/// server whose clock reads `t2` on receipt and `t3` on sending.
#[cfg(test)]
pub fn reply_for(req: &[u8], t2: NtpTime, t3: NtpTime, stratum: u8) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = 4 << 3 | 4;
    p[1] = stratum;
    p[12..16].copy_from_slice(b"LOCL");
    if req.len() >= PACKET_LEN {
        p[24..32].copy_from_slice(&req[40..48]);
    }
    p[32..40].copy_from_slice(&t2.0.to_be_bytes());
    p[40..48].copy_from_slice(&t3.0.to_be_bytes());
    p
}

/// The NTP port.
pub const NTP_PORT: u16 = 123;
/// A server name is at most this long (a DNS name).
pub const MAX_SERVER_NAME: usize = 253;

/// Parses `host`, `host:port`, an IPv6 address or `[v6]:port`.
pub fn parse_server(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    if s.is_empty() || s.len() > MAX_SERVER_NAME + 8 {
        return None;
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), NTP_PORT));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return (sa.port() != 0).then(|| (sa.ip().to_string(), sa.port()));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().ok().filter(|&p| p != 0)?),
        None => (s, NTP_PORT),
    };
    let ok = !host.is_empty()
        && host.len() <= MAX_SERVER_NAME
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then(|| (host.to_string(), port))
}

/// What the `sntp` service last achieved, kept in `<run_dir>/sntp.state`
/// for `pocobelle status`: one line `SERVER OFFSET_MS UNIX_SECS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub server: String,
    pub offset_ms: i64,
    pub at_unix: u64,
}

/// The state file under `system.run_dir`.
pub const STATE_FILE: &str = "sntp.state";

impl SyncState {
    pub fn to_line(&self) -> String {
        format!("{} {} {}\n", self.server, self.offset_ms, self.at_unix)
    }

    pub fn parse(text: &str) -> Option<SyncState> {
        if text.len() > MAX_SERVER_NAME + 64 {
            return None;
        }
        let mut w = text.split_whitespace();
        let s = SyncState {
            server: w.next()?.to_string(),
            offset_ms: w.next()?.parse().ok()?,
            at_unix: w.next()?.parse().ok()?,
        };
        w.next().is_none().then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn timestamp_conversion() {
        // 2026-01-01T00:00:00Z = Unix 1767225600.
        let t = NtpTime::from_unix(1_767_225_600, 500_000_000);
        assert_eq!(t.0 >> 32, 1_767_225_600 + NTP_UNIX_OFFSET);
        assert_eq!(t.0 & 0xffff_ffff, 0x8000_0000);
        // After the 2036 rollover the seconds wrap, differences do not.
        let a = NtpTime::from_unix(2_085_978_495, 0); // 2036-02-07 06:28:15
        let b = NtpTime::from_unix(2_085_978_497, 0);
        assert!(b.0 < a.0);
        assert_eq!(b.diff_ns(a), 2_000_000_000);
    }

    #[test]
    fn request_golden() {
        let r = request(NtpTime(0x0102030405060708));
        assert_eq!(hex(&r), format!("23{}0102030405060708", "00".repeat(39)));
    }

    /// A stratum-2 server reply written out field by field (LI 0, VN 4,
    /// mode 4; root delay, dispersion, reference id 192.168.0.1; reference,
    /// originate = our transmit time, receive and transmit = ours + 0.5 s).
    const GOLDEN_REPLY: &str = "240200e900000a1c00000d67c0a80001\
        ed0a5f7b00000000ed0a5f8000000000ed0a5f8080000000ed0a5f8080000000";

    fn golden() -> Vec<u8> {
        (0..GOLDEN_REPLY.len() / 2)
            .map(|i| u8::from_str_radix(&GOLDEN_REPLY[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn golden_reply_gives_offset_and_delay() {
        let p = golden();
        let t1 = NtpTime(0xed0a5f80_00000000);
        // We receive it 1 s after sending; the server held it 0 s and its
        // clock reads 0.5 s ahead of ours at both ends.
        let t4 = NtpTime(0xed0a5f81_00000000);
        let s = parse_reply(&p, t1, t4).unwrap();
        assert_eq!(s.stratum, 2);
        assert_eq!(s.delay_ns, 1_000_000_000);
        assert_eq!(s.offset_ns, 0);
        let t4 = NtpTime(0xed0a5f80_00000000);
        // Received "instantly": offset is the full 0.5 s.
        let s = parse_reply(&p, t1, t4).unwrap();
        assert_eq!(s.offset_ns, 500_000_000);
    }

    #[test]
    fn bad_replies_are_refused() {
        let t1 = NtpTime(0xed0a5f80_00000000);
        let t4 = t1;
        let good = golden();
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut p = good.clone();
            f(&mut p);
            parse_reply(&p, t1, t4)
        };
        assert_eq!(with(&|p| p.truncate(47)), Err(SntpError::Short(47)));
        assert_eq!(
            with(&|p| p[0] = 3 << 6 | 4 << 3 | 4),
            Err(SntpError::Unsynchronised)
        );
        assert_eq!(
            with(&|p| {
                p[1] = 0;
                p[12..16].copy_from_slice(b"RATE")
            }),
            Err(SntpError::KissOfDeath("RATE".into()))
        );
        assert_eq!(with(&|p| p[1] = 16), Err(SntpError::Stratum(16)));
        assert_eq!(with(&|p| p[0] = 4 << 3 | 3), Err(SntpError::NotServer(3)));
        assert_eq!(with(&|p| p[0] = 7 << 3 | 4), Err(SntpError::Version(7)));
        assert_eq!(with(&|p| p[31] = 1), Err(SntpError::OriginMismatch));
        assert_eq!(with(&|p| p[40..48].fill(0)), Err(SntpError::ZeroTransmit));
        let late = NtpTime(t1.0 + (3u64 << 32));
        assert!(matches!(
            parse_reply(&good, t1, late),
            Err(SntpError::Delay(_))
        ));
    }

    #[test]
    fn offset_sign_and_fake_server_round_trip() {
        // Our clock is 1000 s slow: the server says +1000 s.
        let t1 = NtpTime::from_unix(1_000_000, 0);
        let req = request(t1);
        let server = NtpTime::from_unix(1_001_000, 10_000_000);
        let rep = reply_for(&req, server, server, 1);
        let t4 = NtpTime::from_unix(1_000_000, 20_000_000);
        let s = parse_reply(&rep, t1, t4).unwrap();
        // Within a nanosecond (32-bit fractions round down).
        assert!((s.offset_ns - 1_000_000_000_000).abs() <= 1, "{s:?}");
        assert!((s.delay_ns - 20_000_000).abs() <= 1, "{s:?}");
        assert_eq!(
            correction(s.offset_ns, Duration::from_millis(128)),
            Correction::Step
        );
        assert_eq!(
            correction(-50_000_000, Duration::from_millis(128)),
            Correction::Slew
        );
        assert_eq!(
            correction(-500_000_000, Duration::from_millis(128)),
            Correction::Step
        );
    }

    /// Found by fuzz/fuzz_targets/sntp.rs: an address literal with port 0
    /// passed (and so passed config validation of init.sntp.servers),
    /// while `host:0` did not.
    #[test]
    fn port_zero_is_refused_for_address_literals_too() {
        for bad in ["192.0.2.1:0", "[2001:db8::123]:0", "[::1]:0"] {
            assert_eq!(parse_server(bad), None, "{bad}");
        }
    }

    #[test]
    fn servers_and_state_lines() {
        assert_eq!(
            parse_server("pool.ntp.org"),
            Some(("pool.ntp.org".into(), 123))
        );
        assert_eq!(parse_server("ntp.lan:1123"), Some(("ntp.lan".into(), 1123)));
        assert_eq!(parse_server("192.0.2.1"), Some(("192.0.2.1".into(), 123)));
        assert_eq!(
            parse_server("2001:db8::1"),
            Some(("2001:db8::1".into(), 123))
        );
        assert_eq!(parse_server("[::1]:5123"), Some(("::1".into(), 5123)));
        for bad in ["", "a b", "host:0", "host:x", "h/t", ":123"] {
            assert_eq!(parse_server(bad), None, "{bad}");
        }
        let st = SyncState {
            server: "ntp.lan".into(),
            offset_ms: -42,
            at_unix: 1_800_000_000,
        };
        assert_eq!(SyncState::parse(&st.to_line()), Some(st));
        assert_eq!(SyncState::parse("a 1"), None);
        assert_eq!(SyncState::parse("a 1 2 3"), None);
    }

    #[test]
    fn reply_fuzz_never_panics() {
        let mut x: u64 = 0x853c49e6748fea9b;
        let t1 = NtpTime(0xed0a5f80_00000000);
        for _ in 0..5000 {
            let mut p = golden();
            for _ in 0..(x % 3 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % p.len();
                p[i] = (x >> 24) as u8;
            }
            p.truncate((x >> 40) as usize % 60);
            let _ = parse_reply(&p, t1, NtpTime(x));
        }
    }
}
