//! SHA-512 crypt (`$6$`, Ulrich Drepper's "Unix crypt using SHA-256 and
//! SHA-512", as glibc, libxcrypt, `mkpasswd -m sha-512` and `openssl
//! passwd -6` make it), on the SHA-512 of `ring`, which the binary links
//! for TLS anyway. The sha-crypt crate did the same on RustCrypto's sha2:
//! 61 KiB of ARMv5 code for one password check per AUTH.
//!
//! Only checking is needed (users make their hashes with the tools
//! above), so this parses a stored hash, recomputes it and compares in
//! constant time. Inputs are refused as libxcrypt refuses them: salt
//! characters outside the crypt alphabet, rounds below [`MIN_ROUNDS`] or
//! written with leading zeros.

use ring::digest::{Context, SHA512};

/// Rounds when the hash does not say (`$6$salt$...`).
pub const DEFAULT_ROUNDS: u32 = 5_000;

/// Fewest rounds a stored hash may name (libxcrypt refuses fewer; the
/// spec's clamping would silently check a different hash).
pub const MIN_ROUNDS: u32 = 1_000;

/// Longest salt used; a longer one is cut, as the spec says.
pub const MAX_SALT: usize = 16;

/// Length of the encoded SHA-512 result (64 bytes in 86 characters).
const HASH_CHARS: usize = 86;

/// The crypt alphabet (not RFC 4648's base64).
const ALPHABET: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A parsed `$6$` hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hash<'a> {
    pub rounds: u32,
    /// Whether `rounds=` was written (it is then part of the output).
    pub explicit_rounds: bool,
    pub salt: &'a [u8],
    /// The 86 encoded characters after the salt.
    pub hash: &'a [u8],
}

/// Why a stored hash cannot be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("not a SHA-512 crypt hash ($6$...)")]
    NotSha512,
    #[error("rounds not a number from {MIN_ROUNDS} to {max}")]
    Rounds { max: u32 },
    #[error("salt empty or with characters outside [./0-9A-Za-z]")]
    Salt,
    #[error("hash not 86 characters of [./0-9A-Za-z]")]
    Encoding,
}

/// Parses `$6$[rounds=N$]salt$hash`, with at most `max_rounds` rounds.
pub fn parse(s: &str, max_rounds: u32) -> Result<Hash<'_>, HashError> {
    let rest = s.strip_prefix("$6$").ok_or(HashError::NotSha512)?;
    let (rounds, explicit_rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (n, rest) = r
                .split_once('$')
                .ok_or(HashError::Rounds { max: max_rounds })?;
            let ok = !n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit());
            let rounds = n
                .parse::<u32>()
                .ok()
                .filter(|&r| ok && (MIN_ROUNDS..=max_rounds).contains(&r))
                .ok_or(HashError::Rounds { max: max_rounds })?;
            (rounds, true, rest)
        }
        None => (DEFAULT_ROUNDS, false, rest),
    };
    if rounds > max_rounds {
        return Err(HashError::Rounds { max: max_rounds });
    }
    let (salt, hash) = rest.split_once('$').ok_or(HashError::Salt)?;
    let salt = salt.as_bytes();
    if salt.is_empty() || salt.len() > MAX_SALT || !salt.iter().all(|b| ALPHABET.contains(b)) {
        return Err(HashError::Salt);
    }
    let hash = hash.as_bytes();
    if hash.len() != HASH_CHARS || !hash.iter().all(|b| ALPHABET.contains(b)) {
        return Err(HashError::Encoding);
    }
    Ok(Hash {
        rounds,
        explicit_rounds,
        salt,
        hash,
    })
}

/// Whether `password` gives `stored`, compared in constant time.
pub fn verify(password: &[u8], stored: &Hash<'_>) -> bool {
    let ours = encode(&digest(password, stored.salt, stored.rounds));
    ours.iter()
        .zip(stored.hash)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The raw 64-byte result of SHA-512 crypt (the spec's steps 1 to 21);
/// `salt` is cut to [`MAX_SALT`].
pub fn digest(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 64] {
    let salt = &salt[..salt.len().min(MAX_SALT)];
    let p = password;

    // B = SHA512(P S P).
    let mut ctx = Context::new(&SHA512);
    ctx.update(p);
    ctx.update(salt);
    ctx.update(p);
    let b = ctx.finish();
    let b = b.as_ref();

    // A = SHA512(P S, B repeated to len(P), then B or P per bit of len(P)).
    let mut ctx = Context::new(&SHA512);
    ctx.update(p);
    ctx.update(salt);
    update_repeated(&mut ctx, b, p.len());
    let mut n = p.len();
    while n > 0 {
        ctx.update(if n & 1 == 1 { b } else { p });
        n >>= 1;
    }
    let mut a = [0u8; 64];
    a.copy_from_slice(ctx.finish().as_ref());

    // DP = SHA512(P repeated len(P) times); the P sequence is DP repeated
    // to len(P).
    let mut ctx = Context::new(&SHA512);
    for _ in 0..p.len() {
        ctx.update(p);
    }
    let dp = ctx.finish();
    let p_seq = repeat_to(dp.as_ref(), p.len());

    // DS = SHA512(S repeated 16 + A[0] times); the S sequence is DS
    // repeated to len(S).
    let mut ctx = Context::new(&SHA512);
    for _ in 0..16 + usize::from(a[0]) {
        ctx.update(salt);
    }
    let ds = ctx.finish();
    let s_seq = repeat_to(ds.as_ref(), salt.len());

    for i in 0..rounds {
        let mut ctx = Context::new(&SHA512);
        if i & 1 == 1 {
            ctx.update(&p_seq);
        } else {
            ctx.update(&a);
        }
        if i % 3 != 0 {
            ctx.update(&s_seq);
        }
        if i % 7 != 0 {
            ctx.update(&p_seq);
        }
        if i & 1 == 1 {
            ctx.update(&a);
        } else {
            ctx.update(&p_seq);
        }
        a.copy_from_slice(ctx.finish().as_ref());
    }
    a
}

/// Adds `block` repeated (and cut) to `len` bytes.
fn update_repeated(ctx: &mut Context, block: &[u8], len: usize) {
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        ctx.update(&block[..n]);
        left -= n;
    }
}

fn repeat_to(block: &[u8], len: usize) -> Vec<u8> {
    block.iter().copied().cycle().take(len).collect()
}

/// The spec's byte order for SHA-512: each triple is written as four
/// characters, least significant six bits first; byte 63 alone ends it.
const ORDER: [[usize; 3]; 21] = [
    [0, 21, 42],
    [22, 43, 1],
    [44, 2, 23],
    [3, 24, 45],
    [25, 46, 4],
    [47, 5, 26],
    [6, 27, 48],
    [28, 49, 7],
    [50, 8, 29],
    [9, 30, 51],
    [31, 52, 10],
    [53, 11, 32],
    [12, 33, 54],
    [34, 55, 13],
    [56, 14, 35],
    [15, 36, 57],
    [37, 58, 16],
    [59, 17, 38],
    [18, 39, 60],
    [40, 61, 19],
    [62, 20, 41],
];

/// The 86-character encoding of a SHA-512 crypt result.
pub fn encode(d: &[u8; 64]) -> [u8; HASH_CHARS] {
    let mut out = [0u8; HASH_CHARS];
    let mut at = 0;
    let mut put = |w: u32, n: usize| {
        let mut w = w;
        for _ in 0..n {
            out[at] = ALPHABET[(w & 0x3f) as usize];
            w >>= 6;
            at += 1;
        }
    };
    for [x, y, z] in ORDER {
        put(
            (u32::from(d[x]) << 16) | (u32::from(d[y]) << 8) | u32::from(d[z]),
            4,
        );
    }
    put(u32::from(d[63]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full `$6$...` string for `password` under `setting`'s salt and
    /// rounds, as crypt(3) prints it.
    fn crypt(password: &str, setting: &str) -> String {
        // A placeholder hash so that the setting parses.
        let full = format!("{setting}${}", ".".repeat(HASH_CHARS));
        let h = parse(&full, 1_000_000).unwrap();
        let enc = encode(&digest(password.as_bytes(), h.salt, h.rounds));
        let rounds = if h.explicit_rounds {
            format!("rounds={}$", h.rounds)
        } else {
            String::new()
        };
        format!(
            "$6${rounds}{}${}",
            std::str::from_utf8(h.salt).unwrap(),
            std::str::from_utf8(&enc).unwrap()
        )
    }

    /// The spec's own vectors (the salts longer than 16 are cut), then
    /// password and salt lengths around SHA-512's 64-byte block and a
    /// UTF-8 password: each made with glibc 2.36's crypt(3) (libxcrypt,
    /// through Python 3.11's `crypt` module) on 2026-12-05.
    const VECTORS: &[(&str, &str, &str)] = &[
        (
            "Hello world!",
            "$6$saltstring",
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
        ),
        (
            "Hello world!",
            "$6$rounds=10000$saltstringsaltst",
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        ),
        (
            "This is just a test",
            "$6$rounds=5000$toolongsaltstrin",
            "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
        ),
        (
            "",
            "$6$s",
            "$6$s$.ZBEl9liET9mKM6jGxl//vp8wOnIJwfkp.7sG2Ahu2q68bf4LasDRE6k5T5NPzLqBFx3oUbMl6xWpBsFfgm6..",
        ),
        (
            "a",
            "$6$rounds=1000$x",
            "$6$rounds=1000$x$Aa7nCEkUJ0sIbDJiTPKvxJucQTKoFOp1EAKMSWqkzdiaRLP2DgJDYs6pDWajTrxeG/i83EPwY2MMnDNRxyT.1.",
        ),
        (
            "ppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp",
            "$6$rounds=1000$sixteencharsaltX",
            "$6$rounds=1000$sixteencharsaltX$vo0rVCyOdmlWkILqsKhjzDgCuJ.dt/rn5JZVsGvNMHEXmwUJxQ22OxS6VLjXPG8iJ/M4NGtD3q2yy1AvqFoEX/",
        ),
        (
            "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
            "$6$rounds=1001$ab",
            "$6$rounds=1001$ab$gZ.J5moFiM6D4vK1oKFKI4T.9q1qvcum6QYJdFU18I/daVmB0yX8fGK4jjIkZDJw0WNmjystrUyMHWLSgJHfd0",
        ),
        (
            "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr",
            "$6$rounds=1002$abc",
            "$6$rounds=1002$abc$2n.EuNQlIipr4g6wfuTLYy0..WrAbHzaqsRQQ/EHKcAMD3TZBMa4LDvCB8fUrv2noOIi3HFI7Aann5r4oW96P/",
        ),
        (
            "été à Paris",
            "$6$rounds=1003$utf8",
            "$6$rounds=1003$utf8$.Wsvuj/e6I3PP.zcHmUUV0JVwBdFm5cBdqG7m8id6o7m07CyIfxCsnA7ZZjrMa6BjxJWUzDFYrgxPW5An0IGG/",
        ),
        (
            "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt",
            "$6$rounds=1005$./09AZaz",
            "$6$rounds=1005$./09AZaz$S3.qvO591.CI3IhxfF52q07MuE2flT5FNjzccefzzcZQBoPaHlkJ1qFlZ91YconlbJRBRuSEvksMo2fQimu2G.",
        ),
    ];

    #[test]
    fn glibc_and_spec_vectors() {
        for (password, setting, want) in VECTORS {
            assert_eq!(&crypt(password, setting), want, "{password:?} {setting}");
            let h = parse(want, 20_000).unwrap();
            assert!(verify(password.as_bytes(), &h), "{want}");
            assert!(!verify(format!("{password}x").as_bytes(), &h), "{want}");
        }
        // 200 bytes: more than three SHA-512 blocks of password.
        let long = "s".repeat(200);
        assert_eq!(
            crypt(&long, "$6$rounds=1004$long"),
            "$6$rounds=1004$long$x./AcGAd11IWnxMhEANWihMjjVpQeZAMa8PQDu1Brp8aupkrRHwOq59wf6x11CEG0nJiD4JdnjLSlY/QQRm731"
        );
    }

    #[test]
    fn a_longer_salt_is_cut_to_sixteen() {
        assert_eq!(
            digest(b"x", b"saltstringsaltstring", 1000),
            digest(b"x", b"saltstringsaltst", 1000)
        );
    }

    #[test]
    fn what_is_refused() {
        let tail = ".".repeat(HASH_CHARS);
        let p = |s: String| parse(&s, 20_000).map(|_| ());
        assert_eq!(p(format!("$5$salt${tail}")), Err(HashError::NotSha512));
        assert_eq!(p("plaintext".into()), Err(HashError::NotSha512));
        for r in ["999", "0", "01000", "", "20001", "1e4", "99999999999"] {
            assert_eq!(
                p(format!("$6$rounds={r}$salt${tail}")),
                Err(HashError::Rounds { max: 20_000 }),
                "rounds={r}"
            );
        }
        assert_eq!(p(format!("$6$rounds=20000$salt${tail}")), Ok(()));
        assert_eq!(p(format!("$6$sa!t${tail}")), Err(HashError::Salt));
        assert_eq!(p(format!("$6$${tail}")), Err(HashError::Salt));
        assert_eq!(
            p(format!("$6$seventeencharsalt${tail}")),
            Err(HashError::Salt)
        );
        assert_eq!(p("$6$salt".into()), Err(HashError::Salt));
        assert_eq!(p("$6$salt$short".into()), Err(HashError::Encoding));
        assert_eq!(
            p(format!("$6$salt${}", "_".repeat(HASH_CHARS))),
            Err(HashError::Encoding)
        );
        // The default rounds count against the maximum too.
        assert_eq!(
            parse(&format!("$6$salt${tail}"), 4_000).map(|_| ()),
            Err(HashError::Rounds { max: 4_000 })
        );
    }
}
