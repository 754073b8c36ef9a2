//! End-to-end tests of outbound TLS and AUTH in `pocobelle mail`: mail is
//! submitted with `swaks` and delivered to a small SMTP server written
//! here with rustls (Postfix's `smtp-sink` cannot do TLS), which records
//! per session whether STARTTLS was used, which AUTH it saw and the
//! messages. Certificates come from a test CA made with rcgen. All on
//! 127.0.0.1 high ports; the binary runs under `POCOBELLE_TEST_RUNNER`
//! when set.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::{Ca, Kill, child, command, free_port};

fn tmpdir(name: &str) -> PathBuf {
    common::tmpdir("pocobelle-mailtls", name)
}

fn have_swaks() -> bool {
    let ok = Command::new("sh")
        .args(["-c", "command -v swaks"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: swaks missing (run `make setup`)");
    }
    ok
}

/// What one SMTP session looked like from the server's side.
#[derive(Debug, Default, Clone)]
struct Seen {
    tls: bool,
    /// STARTTLS was accepted but the "handshake" was garbage.
    broke_tls: bool,
    /// (mechanism, user, password, over TLS)
    auth: Vec<(String, String, String, bool)>,
    rcpts: Vec<String>,
    messages: usize,
}

#[derive(Clone)]
struct SinkOptions {
    tls: Option<Arc<rustls::ServerConfig>>,
    /// AUTH mechanisms advertised (also in clear when there is no TLS).
    auth: Option<&'static str>,
    creds: (&'static str, &'static str),
    /// Answer STARTTLS with 220, then bytes that are not TLS, and hang up.
    break_tls: bool,
}

/// A tiny SMTP server with STARTTLS and AUTH, one thread per session.
struct Sink {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Sink {
    fn start(opts: SinkOptions) -> Sink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let (opts, seen) = (opts.clone(), s2.clone());
                std::thread::spawn(move || {
                    let mut me = Seen::default();
                    let _ = session(c, &opts, &mut me);
                    seen.lock().unwrap().push(me);
                });
            }
        });
        Sink { port, seen }
    }

    fn sessions(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn messages(&self) -> usize {
        self.sessions().iter().map(|s| s.messages).sum()
    }
}

trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    let mut out = Vec::new();
    for c in b.chunks(4) {
        let mut n = 0u32;
        for (i, v) in c.iter().enumerate() {
            n |= (*v as u32) << (18 - 6 * i);
        }
        for i in 0..c.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn session(tcp: TcpStream, o: &SinkOptions, me: &mut Seen) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut io: BufReader<Box<dyn Rw>> = BufReader::new(Box::new(tcp));
    io.get_mut().write_all(b"220 sink.test ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let up = cmd.to_ascii_uppercase();
        let w = |io: &mut BufReader<Box<dyn Rw>>, s: &str| -> std::io::Result<()> {
            io.get_mut().write_all(s.as_bytes())?;
            io.get_mut().flush()
        };
        if up.starts_with("EHLO") {
            let mut r = String::from("250-sink.test\r\n");
            if o.tls.is_some() && !me.tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if let Some(m) = o.auth {
                r.push_str(&format!("250-AUTH {m}\r\n"));
            }
            r.push_str("250 8BITMIME\r\n");
            w(&mut io, &r)?;
        } else if up == "STARTTLS" && o.break_tls {
            w(&mut io, "220 go ahead\r\n")?;
            // Answer only once the client's hello is in: bytes right
            // after the 220 would be refused as an injection attempt,
            // not taken as a failed handshake.
            let mut hello = [0u8; 512];
            let _ = io.read(&mut hello)?;
            w(&mut io, "this is not a TLS server hello\r\n")?;
            me.broke_tls = true;
            return Ok(());
        } else if up == "STARTTLS" && o.tls.is_some() && !me.tls {
            w(&mut io, "220 go ahead\r\n")?;
            let inner = io.into_inner();
            let conn = rustls::ServerConnection::new(o.tls.clone().unwrap()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, inner);
            // Finish the handshake now: a client that refuses the
            // certificate ends the session here.
            while tls.conn.is_handshaking() {
                tls.conn.complete_io(&mut tls.sock)?;
            }
            me.tls = true;
            io = BufReader::new(Box::new(tls));
        } else if up.starts_with("AUTH PLAIN ") {
            let raw = b64decode(&cmd[11..]);
            let parts: Vec<String> = raw
                .split(|&b| b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            let (u, p) = (parts[1].clone(), parts[2].clone());
            let ok = (u.as_str(), p.as_str()) == o.creds;
            me.auth.push(("PLAIN".into(), u, p, me.tls));
            w(&mut io, if ok { "235 ok\r\n" } else { "535 no\r\n" })?;
        } else if up == "AUTH LOGIN" {
            w(&mut io, "334 VXNlcm5hbWU6\r\n")?;
            line.clear();
            io.read_line(&mut line)?;
            let u = String::from_utf8_lossy(&b64decode(line.trim_end())).into_owned();
            w(&mut io, "334 UGFzc3dvcmQ6\r\n")?;
            line.clear();
            io.read_line(&mut line)?;
            let p = String::from_utf8_lossy(&b64decode(line.trim_end())).into_owned();
            let ok = (u.as_str(), p.as_str()) == o.creds;
            me.auth.push(("LOGIN".into(), u, p, me.tls));
            w(&mut io, if ok { "235 ok\r\n" } else { "535 no\r\n" })?;
        } else if up.starts_with("AUTH") {
            w(&mut io, "504 unknown mechanism\r\n")?;
        } else if up.starts_with("RCPT TO:") {
            me.rcpts.push(cmd[8..].to_string());
            w(&mut io, "250 ok\r\n")?;
        } else if up == "DATA" {
            w(&mut io, "354 go\r\n")?;
            loop {
                line.clear();
                if io.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
            }
            me.messages += 1;
            w(&mut io, "250 queued\r\n")?;
        } else if up == "QUIT" {
            w(&mut io, "221 bye\r\n")?;
            return Ok(());
        } else {
            w(&mut io, "250 ok\r\n")?;
        }
    }
}

struct Router {
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    _child: Kill,
}

impl Router {
    fn new(name: &str, mail_extra: &str, tail: &str) -> Router {
        let dir = tmpdir(name);
        let port = free_port();
        let config = dir.join("pocobelle.toml");
        std::fs::write(
            &config,
            format!(
                "[system]\nhostname = \"mx.test\"\ndata_dir = \"{d}/data\"\nrun_dir = \"{d}/run\"\n\n\
                 [mail]\nlisten = [\"127.0.0.1:{port}\"]\nrelay_networks = [\"127.0.0.0/8\"]\n\
                 error_delay_ms = 10\nmin_free_bytes = 0\n\
                 retry_min_s = 1\nretry_max_s = 2\nprobe_interval_s = 1\n{mail_extra}\n{tail}\n",
                d = dir.display(),
            ),
        )
        .unwrap();
        let child = command()
            .args(["mail", "--config"])
            .arg(&config)
            .stderr(std::fs::File::create(dir.join("mail.log")).unwrap())
            .spawn()
            .unwrap();
        let r = Router {
            dir,
            config,
            port,
            _child: Kill(child),
        };
        r.wait("mail to listen", 30, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        r
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mail.log")).unwrap_or_default()
    }

    fn wait(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn send(&self, to: &str) {
        let out = child("swaks")
            .args(["--server", &format!("127.0.0.1:{}", self.port)])
            .args(["--from", "sender@lan.test", "--to", to, "--timeout", "30"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swaks to {to} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    fn mailq(&self) -> String {
        let out = command()
            .args(["mailq", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn tls_sink(ca: &Ca, cert_name: &str, auth: Option<&'static str>) -> Sink {
    Sink::start(SinkOptions {
        tls: Some(ca.server_config(cert_name)),
        auth,
        creds: ("relay-user", "s3cret:pw"),
        break_tls: false,
    })
}

fn plain_sink(auth: Option<&'static str>) -> Sink {
    Sink::start(SinkOptions {
        tls: None,
        auth,
        creds: ("relay-user", "s3cret:pw"),
        break_tls: false,
    })
}

#[test]
fn may_falls_back_to_plaintext_when_the_handshake_fails() {
    if !have_swaks() {
        return;
    }
    let ca = Ca::new("Pocobelle test CA");
    // Offers STARTTLS, says 220, then talks nonsense instead of TLS.
    let broken = Sink::start(SinkOptions {
        tls: Some(ca.server_config("broken.test")),
        auth: None,
        creds: ("relay-user", "s3cret:pw"),
        break_tls: true,
    });
    let r = Router::new(
        "mayfallback",
        "",
        &format!(
            "[mail.routes]\n\"broken.test\" = \"127.0.0.1:{}\"\n",
            broken.port
        ),
    );
    r.send("a@broken.test");
    r.wait("the plaintext delivery", 30, || broken.messages() == 1);
    let sessions = broken.sessions();
    // First the failed handshake, then the same hop again without TLS.
    assert!(
        sessions.iter().any(|s| s.broke_tls && s.messages == 0),
        "{sessions:?}"
    );
    assert!(
        sessions
            .iter()
            .any(|s| !s.tls && !s.broke_tls && s.messages == 1),
        "{sessions:?}"
    );
    r.wait("the delivery log", 10, || {
        r.log().contains("<a@broken.test>: delivered via")
    });
    let log = r.log();
    assert!(log.contains("trying again without TLS"), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("<a@broken.test>") && l.contains("delivered"))
        .unwrap_or_default();
    assert!(line.contains("no TLS"), "{log}");
}

#[test]
fn opportunistic_tls_when_offered_and_plaintext_when_not() {
    if !have_swaks() {
        return;
    }
    let ca = Ca::new("Pocobelle test CA");
    // A certificate for another name, from a CA nobody configured: "may"
    // takes it anyway.
    let offers = tls_sink(&ca, "elsewhere.test", None);
    let plain = plain_sink(None);
    let r = Router::new(
        "may",
        "",
        &format!(
            "[mail.routes]\n\"tls.test\" = \"localhost:{}\"\n\"plain.test\" = \"127.0.0.1:{}\"\n",
            offers.port, plain.port
        ),
    );
    r.send("a@tls.test");
    r.send("b@plain.test");
    r.wait("both deliveries", 30, || {
        offers.messages() == 1 && plain.messages() == 1
    });
    assert!(
        offers.sessions().iter().all(|s| s.tls),
        "{:?}",
        offers.sessions()
    );
    assert!(plain.sessions().iter().all(|s| !s.tls));
    r.wait("the delivery log", 10, || {
        let log = r.log();
        log.contains("<a@tls.test>: delivered via") && log.contains("<b@plain.test>: delivered via")
    });
    let log = r.log();
    let line = |who: &str| {
        log.lines()
            .find(|l| l.contains(who) && l.contains("delivered"))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("<a@tls.test>").contains("TLS TLSv1_3"), "{log}");
    assert!(line("<b@plain.test>").contains("no TLS"), "{log}");
}

#[test]
fn required_tls_verifies_and_otherwise_keeps_mail_queued() {
    if !have_swaks() {
        return;
    }
    let ca = Ca::new("Pocobelle test CA");
    let good = tls_sink(&ca, "localhost", None);
    let wrong_name = tls_sink(&ca, "other.test", None);
    let other_ca = tls_sink(&Ca::new("Someone else's CA"), "localhost", None);
    let no_tls = plain_sink(None);
    let r0 = tmpdir("required-ca");
    let ca_file = r0.join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let route = |p: u16| format!("{{ hop = \"localhost:{p}\", tls = \"required\" }}");
    let r = Router::new(
        "required",
        &format!("tls_ca_file = \"{}\"", ca_file.display()),
        &format!(
            "[mail.routes]\n\"good.test\" = {}\n\"name.test\" = {}\n\"ca.test\" = {}\n\"none.test\" = {}\n",
            route(good.port),
            route(wrong_name.port),
            route(other_ca.port),
            route(no_tls.port)
        ),
    );
    for to in ["u@good.test", "u@name.test", "u@ca.test", "u@none.test"] {
        r.send(to);
    }
    r.wait("the verified delivery", 30, || good.messages() == 1);
    // Several rounds of retries (retry_min_s = 1, probes every second).
    r.wait("retries", 30, || {
        no_tls.sessions().len() >= 2
            && wrong_name.sessions().len() >= 2
            && other_ca.sessions().len() >= 2
    });
    assert_eq!(
        wrong_name.messages() + other_ca.messages() + no_tls.messages(),
        0
    );
    assert!(no_tls.sessions().iter().all(|s| s.rcpts.is_empty()));
    let q = r.mailq();
    for to in ["u@name.test", "u@ca.test", "u@none.test"] {
        assert!(q.contains(to), "{to} still queued:\n{q}");
    }
    assert!(!q.contains("u@good.test"), "{q}");
    let log = r.log();
    assert!(!log.contains("bounced") && !log.contains("DSN"), "{log}");
    assert!(
        log.contains("TLS is required and the server does not offer STARTTLS"),
        "{log}"
    );
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(
        log.contains("NotValidForName") || log.contains("not valid for"),
        "{log}"
    );
    assert!(
        log.contains("UnknownIssuer") || log.contains("unknown issuer"),
        "{log}"
    );
}

#[test]
fn smarthost_auth_is_sent_only_over_tls() {
    if !have_swaks() {
        return;
    }
    let ca = Ca::new("Pocobelle test CA");
    let plain_auth = tls_sink(&ca, "localhost", Some("PLAIN LOGIN"));
    let login_only = tls_sink(&ca, "localhost", Some("LOGIN"));
    let cleartext = plain_sink(Some("PLAIN LOGIN"));
    let r0 = tmpdir("auth-files");
    let creds = r0.join("relay.auth");
    std::fs::write(&creds, "# smart host account\nrelay-user:s3cret:pw\n").unwrap();
    let host = |p: u16| {
        format!(
            "{{ hop = \"localhost:{p}\", auth_file = \"{}\" }}",
            creds.display()
        )
    };
    // The smart host takes everything; two routes exercise LOGIN and a
    // server without STARTTLS.
    let r = Router::new(
        "auth",
        &format!("smarthost = {}", host(plain_auth.port)),
        &format!(
            "[mail.routes]\n\"login.test\" = {}\n\"clear.test\" = {}\n",
            host(login_only.port),
            host(cleartext.port)
        ),
    );
    r.send("x@anywhere.test");
    r.send("y@login.test");
    r.send("z@clear.test");
    r.wait("deliveries with AUTH", 30, || {
        plain_auth.messages() == 1 && login_only.messages() == 1
    });
    let auth = |s: &Sink| -> Vec<(String, String, String, bool)> {
        s.sessions().into_iter().flat_map(|s| s.auth).collect()
    };
    let want = |m: &str| {
        vec![(
            m.to_string(),
            "relay-user".to_string(),
            "s3cret:pw".to_string(),
            true,
        )]
    };
    assert_eq!(auth(&plain_auth), want("PLAIN"));
    assert_eq!(auth(&login_only), want("LOGIN"));
    r.wait("retries to the cleartext server", 30, || {
        cleartext.sessions().len() >= 2
    });
    assert!(auth(&cleartext).is_empty(), "credentials never go in clear");
    assert_eq!(cleartext.messages(), 0);
    assert!(r.mailq().contains("z@clear.test"));
    let log = r.log();
    assert!(
        log.contains("refusing to send AUTH credentials without TLS"),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "the password is never logged");
}

#[test]
fn check_config_reports_missing_ca_and_credentials_files() {
    let d = tmpdir("check");
    let cfg = d.join("p.toml");
    let run = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let out = command().arg("check-config").arg(&cfg).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&format!(
        "[mail]\ntls_ca_file = \"{}/missing.pem\"\nsmarthost = {{ hop = \"relay.test:587\", tls = \"required\" }}\n",
        d.display()
    ));
    assert!(
        !ok && err.contains("mail.tls_ca_file") && err.contains("missing.pem"),
        "{err}"
    );
    let (ok, err) = run(&format!(
        "[mail]\nsmarthost = {{ hop = \"relay.test:587\", auth_file = \"{}/nope.auth\" }}\n",
        d.display()
    ));
    assert!(
        !ok && err.contains("mail.smarthost") && err.contains("nope.auth"),
        "{err}"
    );
    let auth = d.join("bad.auth");
    std::fs::write(&auth, "no colon here\n").unwrap();
    let (ok, err) = run(&format!(
        "[mail]\nsmarthost = {{ hop = \"relay.test:587\", auth_file = \"{}\" }}\n",
        auth.display()
    ));
    assert!(!ok && err.contains("user:password"), "{err}");
    std::fs::write(&auth, "me:pw\n").unwrap();
    let (ok, err) = run(&format!(
        "[mail]\nsmarthost = {{ hop = \"relay.test:587\", auth_file = \"{}\" }}\n",
        auth.display()
    ));
    assert!(ok, "{err}");
}
