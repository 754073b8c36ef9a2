//! Helpers shared by the end-to-end tests (`mod common;` in each): free
//! loopback ports, scratch directories, children that die with the test,
//! the `pocobelle` command behind `POCOBELLE_TEST_RUNNER` (qemu-user for
//! the ARM runs), and a test certificate authority made with rcgen.
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `tool` is on PATH (or is an existing path).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        || Path::new(tool).exists()
}

/// A fresh, empty directory under the system's temp dir, unique per test
/// binary run: `<prefix>-<name>-<pid>`.
pub fn tmpdir(prefix: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A fresh service directory with `run/` and `data/` inside (for a
/// config's `system.run_dir` and `system.data_dir`).
pub fn service_dir(prefix: &str, name: &str) -> PathBuf {
    let d = tmpdir(prefix, name);
    std::fs::create_dir_all(d.join("run")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    d
}

/// Wall-clock bounds are multiplied by this under an emulating runner.
pub fn slack() -> u32 {
    match std::env::var("POCOBELLE_TEST_RUNNER") {
        Ok(r) if !r.trim().is_empty() => 4,
        _ => 1,
    }
}

/// A child killed and reaped when the test lets go of it.
pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child that dies with the test process and does not inherit its
/// descriptors (a leaked child must never keep the build lock or a
/// port open).
pub fn child(program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    // SAFETY: only async-signal-safe calls (prctl, close) between fork and exec.
    unsafe {
        c.pre_exec(|| {
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            for fd in 3..1024 {
                let _ = nix::unistd::close(fd);
            }
            Ok(())
        });
    }
    c
}

/// The built `pocobelle` as a [`child`], behind the words of
/// `POCOBELLE_TEST_RUNNER` when set (the ARM harness cannot exec an ARM
/// binary directly: no binfmt_misc).
pub fn command() -> Command {
    runner(child)
}

/// As [`command`], but the child inherits the test's descriptors (for a
/// test that hands it one, such as a readiness pipe).
pub fn command_keeping_fds() -> Command {
    runner(|p| Command::new(p))
}

fn runner(make: fn(&str) -> Command) -> Command {
    let bin = env!("CARGO_BIN_EXE_pocobelle");
    match std::env::var("POCOBELLE_TEST_RUNNER") {
        Ok(r) if !r.trim().is_empty() => {
            let mut words = r.split_whitespace();
            let mut c = make(words.next().unwrap());
            c.args(words).arg(bin);
            c
        }
        _ => make(bin),
    }
}

/// A test CA and the leaf certificates it signs.
pub struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, for a config's `ca_file`.
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: rcgen::Issuer::new(p, key),
        }
    }

    /// (certificate PEM, key PEM, certificate DER, key DER) for `name`.
    pub fn leaf(&self, name: &str) -> (String, String, CertificateDer<'static>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (
            cert.pem(),
            key.serialize_pem(),
            CertificateDer::from(cert.der().to_vec()),
            key.serialize_der(),
        )
    }

    /// A rustls server configuration presenting a leaf for `name`.
    pub fn server_config(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let (_, _, cert, key) = self.leaf(name);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let c = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .unwrap();
        Arc::new(c)
    }
}
