//! Multi-call dispatch: the table of applets, `--help`, `--version` and
//! `--list`. An applet is one module with a `run(args) -> ExitCode`; this
//! module owns nothing else.

mod check_config;
mod dns;
#[cfg(not(target_arch = "arm"))]
mod flash;
mod init;

mod mail;
mod mailq;
mod net;
mod self_test;
mod sendmail;
mod sntp;
mod ups;

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::ExitCode;

/// Exit status for a command line that does not parse (as BSD sysexits'
/// EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// sysexits(3) statuses: a service is not running (EX_UNAVAILABLE).
pub const EX_UNAVAILABLE: u8 = 69;
/// sysexits(3): an internal error, such as an answer we do not expect.
pub const EX_SOFTWARE: u8 = 70;
/// sysexits(3): a temporary failure; trying again later may work.
pub const EX_TEMPFAIL: u8 = 75;
/// sysexits(3): the configuration file is wrong.
pub const EX_CONFIG: u8 = 78;

/// The name of the multi-call binary itself.
pub const BINARY: &str = "pocobelle";

pub struct Applet {
    /// Name used as `pocobelle NAME` and as a symlink name.
    pub name: &'static str,
    /// Other symlink names that run this applet (e.g. `init` for `/sbin/init`).
    pub aliases: &'static [&'static str],
    /// One line for `--help`.
    pub summary: &'static str,
    /// Runs the applet with the arguments after its name.
    pub run: fn(Vec<OsString>) -> ExitCode,
}

/// Every applet this build provides. Each issue adds its own.
pub const APPLETS: &[Applet] = &[
    Applet {
        name: "check-config",
        aliases: &[],
        summary: "validate a configuration file (default /etc/pocobelle.toml)",
        run: check_config::run,
    },
    Applet {
        name: "init",
        aliases: &[],
        summary: "PID 1: boot, swap, sysctls, supervise dns and mail, shut down cleanly",
        run: init::run_init,
    },
    Applet {
        name: "status",
        aliases: &[],
        summary: "services, memory, swap, clock and last shutdown, from init",
        run: init::run_status,
    },
    Applet {
        name: "log",
        aliases: &[],
        summary: "print init's in-memory log: boot messages and service output",
        run: init::run_log,
    },
    Applet {
        name: "poweroff",
        aliases: &[],
        summary: "ask init to stop the services and power off",
        run: init::run_poweroff,
    },
    Applet {
        name: "reboot",
        aliases: &[],
        summary: "ask init to stop the services and reboot",
        run: init::run_reboot,
    },
    Applet {
        name: "halt",
        aliases: &[],
        summary: "ask init to stop the services and halt",
        run: init::run_halt,
    },
    Applet {
        name: "shutdown",
        aliases: &[],
        summary: "shutdown [-h|-r|-H] [now|+MIN]: as other systems' (NUT's upsmon calls it)",
        run: init::run_shutdown,
    },
    Applet {
        name: "dns",
        aliases: &[],
        summary: "the household DNS cache; `dns stats`, `dns prime` query a running one",
        run: dns::run,
    },
    Applet {
        name: "sntp",
        aliases: &[],
        summary: "keep the clock set from init.sntp.servers (run by init)",
        run: sntp::run,
    },
    Applet {
        name: "ups",
        aliases: &[],
        summary: "watch the UPS of [ups] through upsd (run by init); `ups status`",
        run: ups::run,
    },
    Applet {
        name: "dhcp-event",
        aliases: &[],
        summary: "udhcpc's script: apply a DHCP lease over netlink (run by udhcpc)",
        run: net::dhcp_event,
    },
    Applet {
        name: "self-test",
        aliases: &[],
        summary: "exercise config parsing, DNS wire format and TLS on this CPU",
        run: self_test::run,
    },
    Applet {
        name: "mail",
        aliases: &[],
        summary: "run the mail router; `mail flush`, `mail delete ID`",
        run: mail::run,
    },
    Applet {
        name: "mailq",
        aliases: &[],
        summary: "list the mail queue (sizes, ages, next attempt, last error)",
        run: mailq::run,
    },
    Applet {
        name: "sendmail",
        aliases: &[],
        summary: "submit a message from stdin to the local mail router (-t -i -f -F)",
        run: sendmail::run,
    },
    // Host tool only (see main.rs).
    #[cfg(not(target_arch = "arm"))]
    Applet {
        name: "flash",
        aliases: &[],
        summary: "write an image to a USB key or SD card, safely (host tool)",
        run: flash::run,
    },
];

pub fn find(name: &str) -> Option<&'static Applet> {
    APPLETS
        .iter()
        .find(|a| a.name == name || a.aliases.contains(&name))
}

/// Version, git revision, target triple and build profile.
pub fn version_line() -> String {
    format!(
        "{BINARY} {} (git {}, target {}, profile {})",
        env!("CARGO_PKG_VERSION"),
        env!("POCOBELLE_GIT_REV"),
        env!("POCOBELLE_TARGET"),
        env!("POCOBELLE_PROFILE"),
    )
}

fn usage() -> String {
    let mut s = format!(
        "{}\n\nUsage: {BINARY} APPLET [ARGS...]\n       {BINARY} --help | --version | --list\n       APPLET [ARGS...]   (through a symlink named after the applet)\n\nApplets:\n",
        version_line()
    );
    for a in APPLETS {
        s.push_str(&format!("  {:<14} {}\n", a.name, a.summary));
    }
    s.push_str(&format!(
        "\nRun `{BINARY} APPLET --help` for an applet's options.\n"
    ));
    s
}

fn basename(arg0: &OsStr) -> String {
    Path::new(arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Chooses and runs the applet for this command line.
pub fn dispatch(argv: Vec<OsString>) -> ExitCode {
    let mut args = argv.into_iter();
    let arg0 = args.next().unwrap_or_default();
    let called_as = basename(&arg0);
    if let Some(applet) = find(&called_as) {
        return start(applet, args.collect());
    }
    let Some(first) = args.next() else {
        eprint!("{}", usage());
        return ExitCode::from(EXIT_USAGE);
    };
    match first.to_string_lossy().as_ref() {
        "-h" | "--help" | "help" => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        "-V" | "--version" | "version" => {
            println!("{}", version_line());
            ExitCode::SUCCESS
        }
        "--list" => {
            for a in APPLETS {
                println!("{}", a.name);
                for alias in a.aliases {
                    println!("{alias}");
                }
            }
            ExitCode::SUCCESS
        }
        name => match find(name) {
            Some(applet) => start(applet, args.collect()),
            None => {
                eprintln!("{BINARY}: unknown applet `{name}`; `{BINARY} --help` lists them");
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

fn start(applet: &'static Applet, args: Vec<OsString>) -> ExitCode {
    crate::logging::init(applet.name, crate::config::LogLevel::default().to_filter());
    (applet.run)(args)
}

/// The options every applet that reads the configuration shares: what
/// [`parse_args`] leaves for the applet.
pub struct Args {
    /// `-c FILE` / `--config FILE`, when given.
    pub config: Option<std::path::PathBuf>,
    /// The positional words, in order.
    pub words: Vec<OsString>,
}

impl Args {
    /// The configuration file: `--config` or [`crate::config::DEFAULT_PATH`].
    pub fn config_path(&self) -> std::path::PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| crate::config::DEFAULT_PATH.into())
    }
}

/// Parses `-h`/`--help` (prints `help`, then `Err(SUCCESS)`),
/// `-c`/`--config FILE` and positional words; anything else is a usage
/// error (`Err` with the usage status, already reported).
pub fn parse_args(applet: &str, help: &str, args: Vec<OsString>) -> Result<Args, ExitCode> {
    let mut out = Args {
        config: None,
        words: Vec::new(),
    };
    let mut parser = lexopt::Parser::from_args(args);
    loop {
        match parser.next() {
            Ok(None) => return Ok(out),
            Ok(Some(lexopt::Arg::Short('h') | lexopt::Arg::Long("help"))) => {
                print!("{help}");
                return Err(ExitCode::SUCCESS);
            }
            Ok(Some(lexopt::Arg::Short('c') | lexopt::Arg::Long("config"))) => {
                match parser.value() {
                    Ok(v) => out.config = Some(v.into()),
                    Err(e) => return Err(usage_error(applet, e)),
                }
            }
            Ok(Some(lexopt::Arg::Value(v))) => out.words.push(v),
            Ok(Some(other)) => return Err(usage_error(applet, other.unexpected())),
            Err(e) => return Err(usage_error(applet, e)),
        }
    }
}

/// Loads the configuration, printing its error (file:line: key ...) and
/// returning the failure status when it does not load.
pub fn load_config(path: &std::path::Path) -> Result<crate::config::Config, ExitCode> {
    crate::config::Config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })
}

/// Prints a usage error for `applet` and returns the usage exit status.
pub fn usage_error(applet: &str, err: impl std::fmt::Display) -> ExitCode {
    eprintln!("{BINARY} {applet}: {err}; try `{BINARY} {applet} --help`");
    ExitCode::from(EXIT_USAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applet_names_are_unique() {
        let mut names: Vec<&str> = APPLETS
            .iter()
            .flat_map(|a| std::iter::once(a.name).chain(a.aliases.iter().copied()))
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(n, names.len());
        assert!(!names.contains(&BINARY));
    }

    #[test]
    fn symlink_name_selects_applet() {
        assert_eq!(
            basename(OsStr::new("/usr/sbin/check-config")),
            "check-config"
        );
        assert!(find("check-config").is_some());
        assert!(find("no-such-applet").is_none());
    }

    #[test]
    fn shared_options_parse_config_and_words() {
        let argv = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let a = parse_args("t", "", argv(&["--config", "/x.toml", "stats"])).unwrap();
        assert_eq!(a.config_path(), std::path::PathBuf::from("/x.toml"));
        assert_eq!(a.words, argv(&["stats"]));
        let a = parse_args("t", "", argv(&[])).unwrap();
        assert_eq!(
            a.config_path(),
            std::path::PathBuf::from(crate::config::DEFAULT_PATH)
        );
        assert_eq!(
            parse_args("t", "", argv(&["--bogus"])).err(),
            Some(ExitCode::from(EXIT_USAGE))
        );
        assert_eq!(
            parse_args("t", "", argv(&["-c"])).err(),
            Some(ExitCode::from(EXIT_USAGE))
        );
    }

    #[test]
    fn version_names_target_and_profile() {
        let v = version_line();
        assert!(v.contains(env!("POCOBELLE_TARGET")));
        assert!(v.contains("profile"));
    }
}
