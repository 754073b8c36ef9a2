//! Reads the parsed file (toml's span-carrying [`DeTable`]) into the
//! typed schema of the sections.
//!
//! Each struct gets one small non-generic reader from [`toml_table!`] (its
//! keys are declared once, next to the struct), each unit enum one from
//! [`toml_enum!`], and the primitive types share a few readers here. This
//! replaces serde's derived visitors: their monomorphised copies of toml's
//! `deserialize_any`, one per struct, were about a tenth of the ARM
//! binary. An error carries the span of what it refuses and the dotted
//! key of where it is (`dns.hosts[2].name`, as `locate::line_of_key` reads
//! it), and says what was expected in serde's words, which users and
//! tests already know. Bounds and relations between keys are not checked
//! here but by each section's `validate`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One value of the parsed file, with the byte range it was written at.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// A key or value that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// Bytes of the file holding what was refused (a key, a value, or the
    /// table missing a key).
    pub span: Range<usize>,
    /// Dotted key of what was refused; empty at the top level.
    pub key: String,
    pub message: String,
}

/// The parsed document as a value, for the reader of its top table.
pub fn root(t: Spanned<DeTable<'_>>) -> Value<'_> {
    let span = t.span();
    Spanned::new(span, DeValue::Table(t.into_inner()))
}

/// Reads a whole TOML text as a `T` (a section, in tests).
#[cfg(test)]
pub fn from_str<T: FromToml>(text: &str) -> Result<T, ReadError> {
    let t = DeTable::parse(text).map_err(|e| ReadError {
        span: e.span().unwrap_or_default(),
        key: String::new(),
        message: e.message().to_string(),
    })?;
    T::read(&root(t), "")
}

/// A type the configuration file can hold.
pub trait FromToml: Sized {
    /// Reads `v`, found at the dotted key `path`.
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError>;
}

#[cold]
fn error(span: Range<usize>, path: &str, message: String) -> ReadError {
    ReadError {
        span,
        key: path.to_string(),
        message,
    }
}

/// `invalid type: integer `3`, expected a string`, serde's wording.
#[cold]
pub fn invalid_type(v: &Value<'_>, path: &str, expected: &str) -> ReadError {
    let found = match v.get_ref() {
        DeValue::String(s) => format!("string {:?}", s.as_ref()),
        DeValue::Integer(i) => format!("integer `{i}`"),
        DeValue::Float(f) => format!("floating point `{f}`"),
        DeValue::Boolean(b) => format!("boolean `{b}`"),
        DeValue::Datetime(d) => format!("datetime `{d}`"),
        DeValue::Array(_) => "sequence".to_string(),
        DeValue::Table(_) => "map".to_string(),
    };
    error(
        v.span(),
        path,
        format!("invalid type: {found}, expected {expected}"),
    )
}

/// A custom refusal of the value `v` (a list too long, an address that
/// does not parse).
#[cold]
pub fn invalid_value(v: &Value<'_>, path: &str, message: String) -> ReadError {
    error(v.span(), path, message)
}

/// `expected` as serde lists alternatives: `` `a` ``, `` `a` or `b` ``,
/// `` one of `a`, `b`, `c` ``.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [a] => format!("`{a}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

/// The dotted key of `key` in the table at `path`.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The table `v`, or an error expecting `expected` (`struct LogConfig`).
pub fn table<'a, 'i>(
    v: &'a Value<'i>,
    path: &str,
    expected: &str,
) -> Result<&'a DeTable<'i>, ReadError> {
    match v.get_ref() {
        DeValue::Table(t) => Ok(t),
        _ => Err(invalid_type(v, path, expected)),
    }
}

/// The refusal of `key` (at `span`, dotted key `path`) in a table whose
/// keys are `fields`.
#[cold]
pub fn unknown_field(span: Range<usize>, path: &str, key: &str, fields: &[&str]) -> ReadError {
    let message = if fields.is_empty() {
        format!("unknown field `{key}`, there are no fields")
    } else {
        format!("unknown field `{key}`, expected {}", one_of(fields))
    };
    error(span, path, message)
}

/// Checks that the table `v` (at `path`) has each of the `required` keys.
pub fn require(
    v: &Value<'_>,
    t: &DeTable<'_>,
    path: &str,
    required: &[&str],
) -> Result<(), ReadError> {
    match required.iter().find(|r| !t.contains_key(**r)) {
        Some(r) => Err(error(v.span(), path, format!("missing field `{r}`"))),
        None => Ok(()),
    }
}

/// The index in `names` of the string `v`: a unit variant of an enum.
pub fn variant(v: &Value<'_>, path: &str, names: &[&str]) -> Result<usize, ReadError> {
    let DeValue::String(s) = v.get_ref() else {
        return Err(invalid_type(v, path, &one_of(names)));
    };
    names.iter().position(|n| *n == s.as_ref()).ok_or_else(|| {
        error(
            v.span(),
            path,
            format!("unknown variant `{s}`, expected {}", one_of(names)),
        )
    })
}

/// Reads `v` into `slot`: one copy per field type, shared by the fields of
/// every struct (so that each key costs its struct a call, not an inlined
/// reader).
#[inline(never)]
pub fn set<T: FromToml>(slot: &mut T, v: &Value<'_>, path: &str) -> Result<(), ReadError> {
    *slot = T::read(v, path)?;
    Ok(())
}

/// Declares the keys of a struct the file holds, and reads it: starting
/// from the struct's `Default`, each key of the table sets its field;
/// an unknown key, or a missing one of those listed after `required`,
/// is an error. The per-struct code is one `match` on the key. A struct
/// with required keys derives `Default` only as the blank this starts
/// from: the file must set those keys.
macro_rules! toml_table {
    ($ty:ident { $($field:ident),* $(,)? } $(required { $($req:ident),* $(,)? })?) => {
        impl $crate::config::read::FromToml for $ty {
            fn read(
                v: &$crate::config::read::Value<'_>,
                path: &str,
            ) -> Result<Self, $crate::config::read::ReadError> {
                use $crate::config::read as r;
                const FIELDS: &[&str] = &[$(stringify!($field)),*];
                let t = r::table(v, path, concat!("struct ", stringify!($ty)))?;
                let mut out = <$ty>::default();
                for (k, val) in t.iter() {
                    let key = k.get_ref().as_ref();
                    let at = r::child(path, key);
                    match key {
                        $(stringify!($field) => r::set(&mut out.$field, val, &at)?,)*
                        _ => return Err(r::unknown_field(k.span(), &at, key, FIELDS)),
                    }
                }
                $(r::require(v, t, path, &[$(stringify!($req)),*])?;)?
                Ok(out)
            }
        }
    };
}
pub(crate) use toml_table;

/// Declares the lowercase names of a unit enum's variants, and reads it
/// from one of them.
macro_rules! toml_enum {
    ($ty:ident { $($name:literal => $variant:ident),* $(,)? }) => {
        impl $crate::config::read::FromToml for $ty {
            fn read(
                v: &$crate::config::read::Value<'_>,
                path: &str,
            ) -> Result<Self, $crate::config::read::ReadError> {
                const VARIANTS: &[$ty] = &[$($ty::$variant),*];
                let i = $crate::config::read::variant(v, path, &[$($name),*])?;
                // `variant` returns an index into the names, as many as
                // the variants.
                VARIANTS.get(i).copied().ok_or_else(|| {
                    $crate::config::read::invalid_value(v, path, "unknown variant".into())
                })
            }
        }
    };
}
pub(crate) use toml_enum;

impl FromToml for String {
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(s.to_string()),
            _ => Err(invalid_type(v, path, "a string")),
        }
    }
}

impl FromToml for PathBuf {
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
        match v.get_ref() {
            DeValue::String(s) => Ok(PathBuf::from(s.as_ref())),
            _ => Err(invalid_type(v, path, "path string")),
        }
    }
}

impl FromToml for bool {
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
        match v.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(invalid_type(v, path, "a boolean")),
        }
    }
}

/// The integer `v` as an i64, else an error expecting `ty` (`u32`).
fn int64(v: &Value<'_>, path: &str, ty: &str) -> Result<i64, ReadError> {
    match v.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| {
            invalid_value(
                v,
                path,
                format!("invalid value: integer `{i}`, expected {ty}"),
            )
        }),
        _ => Err(invalid_type(v, path, ty)),
    }
}

/// The integer `v`, checked to fit `T` (named `ty` in errors).
fn int<T: TryFrom<i64>>(v: &Value<'_>, path: &str, ty: &str) -> Result<T, ReadError> {
    let n = int64(v, path, ty)?;
    T::try_from(n).map_err(|_| {
        invalid_value(
            v,
            path,
            format!("invalid value: integer `{n}`, expected {ty}"),
        )
    })
}

macro_rules! int_from_toml {
    ($($t:ident),*) => {$(
        impl FromToml for $t {
            fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
                int(v, path, stringify!($t))
            }
        }
    )*};
}
int_from_toml!(u8, u16, u32, u64, usize, i32, i64);

/// A string that parses as `T` (an address), else an error naming `what`.
fn parsed<T: std::str::FromStr>(v: &Value<'_>, path: &str, what: &str) -> Result<T, ReadError>
where
    T::Err: std::fmt::Display,
{
    match v.get_ref() {
        DeValue::String(s) => s
            .parse()
            .map_err(|e: T::Err| invalid_value(v, path, e.to_string())),
        _ => Err(invalid_type(v, path, what)),
    }
}

impl FromToml for IpAddr {
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
        parsed(v, path, "IP address")
    }
}

impl FromToml for SocketAddr {
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
        parsed(v, path, "socket address")
    }
}

/// The items of the array `v`.
fn array<'a, 'i>(v: &'a Value<'i>, path: &str) -> Result<&'a [Value<'i>], ReadError> {
    match v.get_ref() {
        DeValue::Array(a) => Ok(a),
        _ => Err(invalid_type(v, path, "a sequence")),
    }
}

/// The dotted key of item `i` of the array at `path`.
fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

impl<T: FromToml> FromToml for Vec<T> {
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
        let items = array(v, path)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.push(T::read(item, &index(path, i))?);
        }
        Ok(out)
    }
}

/// A key the file may leave out (TOML has no null: present means some).
impl<T: FromToml> FromToml for Option<T> {
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
        T::read(v, path).map(Some)
    }
}

impl<T: FromToml> FromToml for BTreeMap<String, T> {
    fn read(v: &Value<'_>, path: &str) -> Result<Self, ReadError> {
        let t = table(v, path, "a map")?;
        let mut out = BTreeMap::new();
        for (k, val) in t.iter() {
            let key = k.get_ref().as_ref();
            out.insert(key.to_string(), T::read(val, &child(path, key))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    /// A small struct of each kind of field, read from a snippet.
    #[derive(Debug, Default, PartialEq)]
    struct Sample {
        name: String,
        small: u8,
        big: u64,
        neg: i32,
        on: bool,
        list: Vec<u16>,
        inner: Option<Inner>,
        many: Vec<Inner>,
        map: BTreeMap<String, Inner>,
    }
    toml_table!(Sample { name, small, big, neg, on, list, inner, many, map } required { name });

    #[derive(Debug, Default, PartialEq)]
    struct Inner {
        x: u32,
        addr: Option<SocketAddr>,
    }
    toml_table!(Inner { x, addr });

    fn sample(text: &str) -> Result<Sample, ReadError> {
        Sample::read(
            &root(DeTable::parse(text).expect("test TOML parses")),
            "top",
        )
    }

    /// The 1-based line of a read error's span in `text`.
    fn line(text: &str, e: &ReadError) -> usize {
        crate::config::locate::line_of(text, e.span.start)
    }

    #[test]
    fn reads_nested_inline_and_arrays_of_tables() {
        let text = "name = \"a\"\nsmall = 255\nbig = 0x10\nneg = -7_000\non = true\nlist = [1, 2]\n\
                    inner = { x = 3 }\n[[many]]\nx = 1\n[[many]]\naddr = \"10.0.0.1:53\"\n\
                    [map.one]\nx = 9\n[map.\"two.dots\"]\n";
        let s = sample(text).unwrap();
        assert_eq!(s.name, "a");
        assert_eq!((s.small, s.big, s.neg, s.on), (255, 16, -7000, true));
        assert_eq!(s.list, [1, 2]);
        assert_eq!(s.inner, Some(Inner { x: 3, addr: None }));
        assert_eq!(s.many.len(), 2);
        assert_eq!(s.many[1].addr, Some("10.0.0.1:53".parse().unwrap()));
        assert_eq!(s.map["one"].x, 9);
        assert_eq!(s.map["two.dots"], Inner::default());
    }

    #[test]
    fn each_error_names_its_key_line_and_expectation() {
        for (text, key, at_line, message) in [
            (
                "name = \"a\"\n\nnmae = 1\n",
                "top.nmae",
                3,
                "unknown field `nmae`, expected one of `name`, `small`, `big`, `neg`, `on`, `list`, `inner`, `many`, `map`",
            ),
            ("small = 1\n", "top", 1, "missing field `name`"),
            (
                "name = 3\n",
                "top.name",
                1,
                "invalid type: integer `3`, expected a string",
            ),
            (
                "name = \"a\"\nsmall = 300\n",
                "top.small",
                2,
                "invalid value: integer `300`, expected u8",
            ),
            (
                "name = \"a\"\nneg = 99999999999\n",
                "top.neg",
                2,
                "invalid value: integer `99999999999`, expected i32",
            ),
            (
                "name = \"a\"\nbig = -1\n",
                "top.big",
                2,
                "invalid value: integer `-1`, expected u64",
            ),
            (
                "name = \"a\"\non = \"yes\"\n",
                "top.on",
                2,
                "invalid type: string \"yes\", expected a boolean",
            ),
            (
                "name = \"a\"\nlist = [1, \"b\"]\n",
                "top.list[1]",
                2,
                "invalid type: string \"b\", expected u16",
            ),
            (
                "name = \"a\"\nlist = 1\n",
                "top.list",
                2,
                "invalid type: integer `1`, expected a sequence",
            ),
            (
                "name = \"a\"\ninner = 1.5\n",
                "top.inner",
                2,
                "invalid type: floating point `1.5`, expected struct Inner",
            ),
            (
                "name = \"a\"\n[[many]]\nx = 1\n[[many]]\n\ny = 2\n",
                "top.many[1].y",
                6,
                "unknown field `y`, expected `x` or `addr`",
            ),
            (
                "name = \"a\"\nmany = [{ x = 1 }, { addr = \"nowhere\" }]\n",
                "top.many[1].addr",
                2,
                "invalid socket address syntax",
            ),
            (
                "name = \"a\"\n[map.k]\nx = [1]\n",
                "top.map.k.x",
                3,
                "invalid type: sequence, expected u32",
            ),
            (
                "name = \"a\"\nmap = []\n",
                "top.map",
                2,
                "invalid type: sequence, expected a map",
            ),
        ] {
            let e = sample(text).unwrap_err();
            assert_eq!(e.key, key, "{text:?}");
            assert_eq!(e.message, message, "{text:?}");
            assert_eq!(line(text, &e), at_line, "{text:?}");
        }
    }

    #[test]
    fn enums_are_read_by_their_lowercase_names() {
        use crate::config::LogLevel;
        let v = |s: &str| Spanned::new(0..1, DeValue::String(s.to_string().into()));
        assert_eq!(LogLevel::read(&v("debug"), "l"), Ok(LogLevel::Debug));
        let e = LogLevel::read(&v("loud"), "log.level").unwrap_err();
        assert_eq!(
            e.message,
            "unknown variant `loud`, expected one of `error`, `warn`, `info`, `debug`, `trace`"
        );
        assert_eq!(e.key, "log.level");
        let e = crate::config::Action::read(&v("Score"), "a").unwrap_err();
        assert_eq!(
            e.message,
            "unknown variant `Score`, expected `score` or `reject`"
        );
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/pocobelle.toml"), text)
    }

    /// The message, line and key of a parse error.
    fn parse_error(text: &str) -> (String, Option<usize>, Option<String>) {
        match parse(text) {
            Err(ConfigError::Parse {
                message, line, key, ..
            }) => (message, line, key),
            other => panic!("{text:?}: expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn config_errors_carry_line_and_key() {
        assert_eq!(parse("").unwrap(), Config::default());
        assert_eq!(parse("\n# nothing\n").unwrap(), Config::default());
        assert_eq!(
            parse_error("[log]\nlevle = \"debug\"\n"),
            (
                "unknown field `levle`, expected `level`".to_string(),
                Some(2),
                Some("log.levle".to_string())
            )
        );
        assert_eq!(
            parse_error("[log]\n\nlevel = \"loud\"\n"),
            (
                "unknown variant `loud`, expected one of `error`, `warn`, `info`, `debug`, `trace`"
                    .to_string(),
                Some(3),
                Some("log.level".to_string())
            )
        );
        let (message, line, key) = parse_error("[ups]\nstart_min_charge = 300\n");
        assert_eq!(message, "invalid value: integer `300`, expected u8");
        assert_eq!(
            (line, key.as_deref()),
            (Some(2), Some("ups.start_min_charge"))
        );
        let (message, line, key) = parse_error("[dns]\nlisten = [\"127.0.0.1:53\", 53]\n");
        assert_eq!(
            message,
            "invalid type: integer `53`, expected socket address"
        );
        assert_eq!((line, key.as_deref()), (Some(2), Some("dns.listen[1]")));
        let (message, line, key) =
            parse_error("[dns]\n[[dns.tls_upstreams]]\naddr = \"9.9.9.9\"\n");
        assert_eq!(message, "missing field `name`");
        assert_eq!(
            (line, key.as_deref()),
            (Some(2), Some("dns.tls_upstreams[0]"))
        );
        let (message, line, key) = parse_error("log = 1\n");
        assert_eq!(
            message,
            "invalid type: integer `1`, expected struct LogConfig"
        );
        assert_eq!((line, key.as_deref()), (Some(1), Some("log")));
        let (message, _, key) = parse_error("[mail.routes]\n\"a.test\" = 25\n");
        assert!(
            message.contains("expected \"host:port\" or a table"),
            "{message}"
        );
        assert_eq!(key.as_deref(), Some("mail.routes.a.test"));
        let (message, line, key) = parse_error("[mail.routes]\n\"a.test\" = { tls = \"none\" }\n");
        assert_eq!(message, "missing field `hop`");
        assert_eq!(
            (line, key.as_deref()),
            (Some(2), Some("mail.routes.a.test"))
        );
        let (message, _, key) = parse_error("[ups.driver_extra]\nx = 1.5\n");
        assert_eq!(
            message,
            "invalid type: floating point `1.5`, expected a string, an integer or a boolean"
        );
        assert_eq!(key.as_deref(), Some("ups.driver_extra.x"));
        let (message, _, key) = parse_error("[mail.aliases]\nroot = [\"a@b.test\", 3]\n");
        assert_eq!(message, "invalid type: integer `3`, expected a string");
        assert_eq!(key.as_deref(), Some("mail.aliases.root[1]"));
    }

    /// Reads `text` into a `Config` as `Config::parse` does, without
    /// validating it (so that keys may contradict each other).
    fn read_only(text: &str) -> Result<Config, ReadError> {
        Config::read(&root(DeTable::parse(text).expect("test TOML parses")), "")
    }

    /// Every key of every section, each set to something other than its
    /// default.
    const EVERY_KEY: &str = r#"
[system]
hostname = "box.home.arpa"
data_dir = "/d"
run_dir = "/r"
[log]
level = "trace"
[init]
data_device = "/dev/sda2"
data_fstype = "ext3"
grow_data = false
commit_secs = 30
fsck = "/bin/fsck"
modules = ["g_ether"]
primed_budget_secs = 20
stop_grace_secs = 5
watchdog_device = "/dev/watchdog1"
watchdog_interval_secs = 5
watchdog_timeout_secs = 30
rescue_shell = "/bin/ash"
clock_save_secs = 600
[init.logfile]
file = "x.log"
batch_kib = 8
flush_secs = 60
max_kib = 128
[init.swap]
enabled = false
file = "sw"
size_mib = 64
min_free_mib = 32
swappiness = 5
[init.sysctl]
writeback_batch_kib = 256
min_free_kib = 1024
dirty_expire_secs = 20
dirty_writeback_secs = 10
[init.network]
interface = "eth0"
address = "192.168.1.20/24"
gateway = "192.168.1.1"
address6 = "fd00::20/64"
gateway6 = "fe80::1"
routes = ["10.1.0.0/16 via 192.168.1.2"]
ipv6_autoconf = false
dhcp = true
dhcp_client = "/bin/udhcpc"
wait_secs = 3
[init.sntp]
servers = ["pool.ntp.org"]
poll_secs = 600
step_ms = 500
[[init.service]]
name = "dns"
argv = ["/bin/pocobelle", "dns"]
user = "root"
oom_score_adj = -100
memory_max_mib = 16
ready = "primed"
safe_mode = true
env = ["A=b"]
[dns]
listen = ["10.0.0.1:53"]
upstreams = ["9.9.9.9:53"]
tls_connections = 3
tls_idle_ms = 2000
allow = ["10.0.0.0/8"]
local_domain = "lan"
local_ttl = 60
cache_bytes = 100000
min_ttl = 5
max_ttl = 600
negative_max_ttl = 60
budget_ms = 1000
stale_after_ms = 200
stale_max_age = 100
max_inflight = 10
max_waiters = 10
tcp_max_connections = 10
tcp_idle_ms = 1000
rate_limit_qps = 10
rate_limit_burst = 20
rate_limit_clients = 32
snapshot_interval_secs = 120
hot_names = 10
prime_times = ["05:00"]
prime_rate = 5
prime_budget_secs = 10
[[dns.tls_upstreams]]
addr = "9.9.9.9"
name = "dns.quad9.net"
ca_file = "/etc/ca.pem"
[[dns.hosts]]
name = "nas"
addrs = ["10.0.0.5", "fd00::5"]
[mail]
listen = ["0.0.0.0:2525"]
submission_listen = ["0.0.0.0:587"]
passwd_file = "/etc/passwd.mail"
domains = ["example.org"]
relay_networks = ["10.0.0.0/8"]
max_message_bytes = 2048
max_recipients = 5
max_errors = 5
error_delay_ms = 5
hopcount_limit = 20
inbound_limit = 2
tarpit_connections = 1
command_timeout_s = 60
spool_max_bytes = 2097152
min_free_bytes = 1
segment_bytes = 65536
commit_delay_ms = 1
tls_cert = "/c.pem"
tls_key = "/k.pem"
smarthost = "relay.test:587"
tls_ca_file = "/ca.pem"
outbound_limit = 2
per_destination_limit = 1
retry_min_s = 10
retry_max_s = 20
max_lifetime_s = 3600
delay_warning_s = 0
probe_interval_s = 5
resolver = "10.0.0.1:53"
mx_port = 2525
my_names = ["mx.example.org"]
my_addresses = ["192.0.2.1"]
[mail.routes]
"example.org" = { hop = "mail.lan:25", tls = "required", auth_file = "/a" }
[mail.aliases]
root = "me@example.org"
ops = ["a@example.org", "b@example.org"]
[mail.policy]
reject_score = 5
lookup_budget_ms = 1000
[mail.policy.greeting]
delay_ms = 10
max_delay_ms = 20
[mail.policy.limits]
max_sessions = 2
window_s = 30
max_connections = 3
max_messages = 4
max_recipients = 5
[mail.policy.recipients]
valid = { "example.org" = ["alice"] }
file = "/etc/rcpt"
[mail.policy.greylist]
enabled = true
min_delay_s = 60
retry_window_s = 120
auto_allow_s = 0
save_interval_s = 60
[mail.policy.rdns]
enabled = false
missing = "reject"
missing_score = 1
mismatch = "reject"
mismatch_score = 1
[mail.policy.spf]
enabled = false
fail = "reject"
fail_score = 1
softfail = "reject"
softfail_score = 1
[[mail.policy.dnsbl]]
zone = "bl.example.org"
weight = 5
codes = [2, 4]
[mail.policy.dkim]
verify = false
[mail.policy.dkim.sign."example.org"]
selector = "s1"
key_file = "/k.pem"
[mail.policy.dmarc]
enabled = false
reject = true
[mail.policy.auth_results]
authserv_id = "mx.example.org"
[ups]
mode = "remote"
name = "nas-ups"
host = "192.168.1.10"
port = 3494
user = "mon"
password = "pw"
poll_interval_secs = 2
dead_time_secs = 10
start_min_charge = 50
settle_time_secs = 30
trickle_gap_secs = 5
shutdown_on_runtime_below_secs = 120
kill_power = false
driver = "blazer_usb"
port_path = "/dev/ttyS0"
driver_extra = { vendorid = "0463", pollinterval = 2, pollonly = true }
"#;

    #[test]
    fn every_key_is_read() {
        use crate::config::mail::AliasTargets;
        use crate::config::policy::DkimSignConfig;
        use crate::config::ups::DriverValue;
        use crate::config::{HostEntry, Readiness, Route, ServiceConfig, TlsMode, UpsConfig};
        let c = read_only(EVERY_KEY).unwrap_or_else(|e| panic!("{e:?}"));
        let d = Config::default();
        let (u, du) = (c.ups.clone().unwrap_or_default(), UpsConfig::default());
        let (p, dp) = (&c.mail.policy, &d.mail.policy);
        let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
        // A key wired to no field, or to another one, leaves a field at
        // its default here.
        for (name, a, b) in [
            ("system", dbg(&c.system), dbg(&d.system)),
            ("log", dbg(&c.log), dbg(&d.log)),
            ("init", dbg(&c.init), dbg(&d.init)),
            ("init.logfile", dbg(&c.init.logfile), dbg(&d.init.logfile)),
            ("init.swap", dbg(&c.init.swap), dbg(&d.init.swap)),
            ("init.sysctl", dbg(&c.init.sysctl), dbg(&d.init.sysctl)),
            ("init.network", dbg(&c.init.network), dbg(&d.init.network)),
            ("init.sntp", dbg(&c.init.sntp), dbg(&d.init.sntp)),
            ("dns", dbg(&c.dns), dbg(&d.dns)),
            ("mail", dbg(&c.mail), dbg(&d.mail)),
            ("mail.policy", dbg(p), dbg(dp)),
            ("greeting", dbg(&p.greeting), dbg(&dp.greeting)),
            ("limits", dbg(&p.limits), dbg(&dp.limits)),
            ("recipients", dbg(&p.recipients), dbg(&dp.recipients)),
            ("greylist", dbg(&p.greylist), dbg(&dp.greylist)),
            ("rdns", dbg(&p.rdns), dbg(&dp.rdns)),
            ("spf", dbg(&p.spf), dbg(&dp.spf)),
            ("dkim", dbg(&p.dkim), dbg(&dp.dkim)),
            ("dmarc", dbg(&p.dmarc), dbg(&dp.dmarc)),
            ("auth_results", dbg(&p.auth_results), dbg(&dp.auth_results)),
            ("ups", dbg(&u), dbg(&du)),
        ] {
            every_field_differs(name, &a, &b);
        }
        // Tables in arrays and maps have no default to differ from.
        assert_eq!(
            c.init.service,
            [ServiceConfig {
                name: "dns".into(),
                argv: vec!["/bin/pocobelle".into(), "dns".into()],
                user: Some("root".into()),
                oom_score_adj: -100,
                memory_max_mib: 16,
                ready: Readiness::Primed,
                safe_mode: true,
                env: vec!["A=b".into()],
            }]
        );
        let t = &c.dns.tls_upstreams[0];
        assert_eq!(
            (t.addr.as_str(), t.name.as_str()),
            ("9.9.9.9", "dns.quad9.net")
        );
        assert_eq!(t.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            c.dns.hosts,
            [HostEntry {
                name: "nas".into(),
                addrs: vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            }]
        );
        assert_eq!(
            c.mail.routes["example.org"],
            Route {
                hop: "mail.lan:25".into(),
                tls: TlsMode::Required,
                auth_file: Some("/a".into()),
            }
        );
        assert_eq!(c.mail.smarthost, Some(Route::from("relay.test:587")));
        assert_eq!(
            c.mail.aliases["root"],
            AliasTargets(vec!["me@example.org".into()])
        );
        assert_eq!(c.mail.aliases["ops"].0.len(), 2);
        let l = &p.dnsbl[0];
        assert_eq!(
            (l.zone.as_str(), l.weight, l.codes.as_slice()),
            ("bl.example.org", 5, &[2, 4][..])
        );
        assert_eq!(
            p.dkim.sign["example.org"],
            DkimSignConfig {
                selector: "s1".into(),
                key_file: "/k.pem".into(),
            }
        );
        assert_eq!(p.recipients.valid["example.org"], ["alice"]);
        assert_eq!(u.driver_extra["vendorid"], DriverValue::Text("0463".into()));
        assert_eq!(u.driver_extra["pollinterval"], DriverValue::Int(2));
        assert_eq!(u.driver_extra["pollonly"], DriverValue::Flag(true));
    }

    /// Asserts that each top-level field in the Debug text `a` of a struct
    /// differs from the same field in `b`.
    fn every_field_differs(name: &str, a: &str, b: &str) {
        let (fa, fb) = (top_fields(a), top_fields(b));
        assert!(!fa.is_empty() && fa.len() == fb.len(), "{name}: {a}");
        for ((field, va), (_, vb)) in fa.iter().zip(&fb) {
            assert_ne!(va, vb, "{name}.{field} kept its default");
        }
    }

    /// The `field: value` pairs at the top level of a struct's Debug text
    /// (`Name { a: 1, b: [2, 3] }`).
    fn top_fields(s: &str) -> Vec<(&str, &str)> {
        let body = match (s.find('{'), s.rfind('}')) {
            (Some(open), Some(close)) if open < close => &s[open + 1..close],
            _ => return Vec::new(),
        };
        let (mut depth, mut start, mut in_str, mut escaped) = (0, 0, false, false);
        let mut parts = Vec::new();
        for (i, ch) in body.char_indices() {
            match ch {
                _ if escaped => escaped = false,
                '\\' if in_str => escaped = true,
                '"' => in_str = !in_str,
                '{' | '[' | '(' if !in_str => depth += 1,
                '}' | ']' | ')' if !in_str => depth -= 1,
                ',' if !in_str && depth == 0 => {
                    parts.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&body[start..]);
        parts
            .into_iter()
            .filter_map(|p| p.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect()
    }

    /// The shipped example and the image's board file read as they did
    /// with serde: the example is all comments (the defaults), the board
    /// file sets a few keys and three services.
    #[test]
    fn shipped_files_read_as_before() {
        let example = include_str!("../../../rootfs-overlay/etc/pocobelle.toml");
        assert_eq!(parse(example).unwrap(), Config::default());
        let board = include_str!("../../../board/common/pocobelle.toml")
            .replace("@BOARD@", "qemu")
            .replace("@NET_IF@", "eth0")
            .replace("@MODULES@", "\"virtio_net\"");
        let c = parse(&board).unwrap_or_else(|e| panic!("{e}"));
        let mut want = Config::default();
        want.init.data_device = "/dev/disk/by-label/pocodata".into();
        want.init.modules = vec!["virtio_net".into()];
        want.init.logfile.file = "pocobelle.log".into();
        want.init.network.interface = "eth0".into();
        want.init.network.dhcp = true;
        want.dns.listen = vec!["0.0.0.0:53".parse().unwrap(), "[::]:53".parse().unwrap()];
        want.mail.listen = vec!["0.0.0.0:25".into(), "[::]:25".into()];
        let mut services = crate::config::ServiceConfig::defaults(|_| true);
        services.push(crate::config::ServiceConfig {
            name: "console".into(),
            argv: ["/bin/busybox", "cttyhack", "/bin/sh", "-l"]
                .map(String::from)
                .to_vec(),
            user: Some("root".into()),
            safe_mode: true,
            ..crate::config::ServiceConfig::default()
        });
        want.init.service = services;
        assert_eq!(c, want);
    }
}
