//! `pocobelle flash [--bmap FILE] [--force-non-removable DEVICE] [--yes]
//! IMAGE DEVICE`: writes a board image to a USB key or SD card, safely (a
//! host tool, run by `make flash`). This file parses the command line and
//! runs the steps of `crate::flash` in order: load the bmap, match it to
//! the image, check the device, open it exclusively, check the image,
//! confirm, write, verify. It prints each refusal as one line and exits
//! with its own status (the table is in `crate::flash`); progress goes to
//! stderr only when stderr is a terminal.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::flash::bmap::{self, Bmap};
use crate::flash::copy::{self, Phase};
use crate::flash::device::{self, Host, Refusal};
use crate::flash::{EXIT_BAD_BMAP, EXIT_FAILED, EXIT_IMAGE_MISMATCH, EXIT_NOT_CONFIRMED};

const HELP: &str = "\
Usage: pocobelle flash [--bmap FILE] [--force-non-removable DEVICE] [--yes] IMAGE DEVICE

Writes IMAGE (out/BOARD/pocobelle-BOARD.img) to DEVICE, a whole USB key
or SD card such as /dev/sdb (see `lsblk`). Only the blocks listed in the
image's bmap file are written; each is checked in the image first and
read back from the device after. Refuses anything that is not a
removable, unused whole disk at least as large as the image, and never
the disk the running system is on.

Options:
  --bmap FILE                   the bmap file (default: IMAGE with .img
                                replaced by .bmap, else IMAGE.bmap)
  --force-non-removable DEVICE  write a disk sysfs calls non-removable
                                (an internal SD slot); name DEVICE again
  -y, --yes                     do not ask for confirmation
";

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The command line, parsed.
#[derive(Debug, PartialEq, Eq)]
struct Opts {
    bmap: Option<PathBuf>,
    force: Option<PathBuf>,
    yes: bool,
    image: PathBuf,
    device: PathBuf,
}

/// `Ok(None)` for `--help`; `Err` is the usage error's message.
fn parse(args: Vec<OsString>) -> Result<Option<Opts>, String> {
    let mut parser = lexopt::Parser::from_args(args);
    let (mut bmap, mut force, mut yes) = (None, None, false);
    let mut words: Vec<PathBuf> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            lexopt::Arg::Short('h') | lexopt::Arg::Long("help") => return Ok(None),
            lexopt::Arg::Short('y') | lexopt::Arg::Long("yes") => yes = true,
            lexopt::Arg::Long("bmap") => {
                bmap = Some(parser.value().map_err(|e| e.to_string())?.into())
            }
            lexopt::Arg::Long("force-non-removable") => {
                force = Some(parser.value().map_err(|e| e.to_string())?.into())
            }
            lexopt::Arg::Value(v) => words.push(v.into()),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let [image, device]: [PathBuf; 2] = words
        .try_into()
        .map_err(|_| "expected IMAGE and DEVICE".to_string())?;
    Ok(Some(Opts {
        bmap,
        force,
        yes,
        image,
        device,
    }))
}

/// IMAGE with `.img` replaced by `.bmap`, else IMAGE + `.bmap`.
fn default_bmap(image: &Path) -> PathBuf {
    if image.extension().is_some_and(|e| e == "img") {
        image.with_extension("bmap")
    } else {
        let mut s = image.as_os_str().to_owned();
        s.push(".bmap");
        s.into()
    }
}

/// Prints `pocobelle flash: MESSAGE` and returns `code`.
fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{} flash: {message}", super::BINARY);
    ExitCode::from(code)
}

fn load_bmap(path: &Path) -> Result<Bmap, String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!(
            "no bmap file {shown}: make one with `bmaptool create -o {shown} IMAGE`, or name it with --bmap"
        ),
        _ => format!("{shown}: {e}"),
    })?;
    let mut bytes = Vec::new();
    file.take(bmap::MAX_BMAP_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: {e}"))?;
    bmap::parse(&bytes).map_err(|e| format!("{shown}: {e}"))
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn run(args: Vec<OsString>) -> ExitCode {
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return super::usage_error("flash", e),
    };
    let bmap_path = opts
        .bmap
        .clone()
        .unwrap_or_else(|| default_bmap(&opts.image));
    let bmap = match load_bmap(&bmap_path) {
        Ok(b) => b,
        Err(e) => return fail(EXIT_BAD_BMAP, e),
    };
    let image = match File::open(&opts.image).and_then(|f| Ok((f.metadata()?.len(), f))) {
        Ok((len, _)) if len != bmap.image_size() => {
            return fail(
                EXIT_IMAGE_MISMATCH,
                format!(
                    "{} is {len} bytes but {} describes a {}-byte image: they do not belong together",
                    opts.image.display(),
                    bmap_path.display(),
                    bmap.image_size()
                ),
            );
        }
        Ok((_, f)) => f,
        Err(e) => return fail(EXIT_FAILED, format!("{}: {e}", opts.image.display())),
    };
    let host = Host::from_env();
    let forced = match &opts.force {
        Some(f) if host.same_device(f, &opts.device) => true,
        Some(f) => {
            return super::usage_error(
                "flash",
                format!(
                    "--force-non-removable names {}, not the device {}",
                    f.display(),
                    opts.device.display()
                ),
            );
        }
        None => false,
    };
    let facts = match host.facts(&opts.device, forced) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    if let Err(r) = device::check(&facts, bmap.image_size()) {
        return fail(r.exit_code(), r);
    }
    let name = facts.name.clone().unwrap_or_default();
    // O_EXCL on a block device: fails with EBUSY while anything (a mount,
    // another flasher, a partitioner) has it open, and keeps them out.
    let dev = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(&opts.device)
    {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let r = Refusal::Busy { name };
            return fail(r.exit_code(), r);
        }
        Err(e) => return fail(EXIT_FAILED, format!("{}: {e}", opts.device.display())),
    };
    // The node checked is the node opened (not swapped in between).
    let kind = dev.metadata().map(|m| m.file_type());
    let still_device = match (host.is_test(), kind) {
        (false, Ok(t)) => t.is_block_device(),
        (true, Ok(t)) => t.is_file(),
        (_, Err(_)) => false,
    };
    if !still_device {
        let r = Refusal::NotBlock(facts.path.clone());
        return fail(r.exit_code(), r);
    }
    let mut buf = vec![0u8; copy::CHUNK_BYTES];
    let mut progress = Progress::new(bmap.mapped_bytes());
    let result = copy::check_image(&bmap, &image, &mut buf, &mut |p, n| progress.add(p, n));
    progress.end();
    if let Err(e) = result {
        return fail(e.exit_code(), e);
    }
    if !opts.yes
        && let Err(why) = confirm(&opts, &facts)
    {
        return fail(EXIT_NOT_CONFIRMED, why);
    }
    let started = Instant::now();
    let result = copy::write(&bmap, &image, &dev, &mut buf, &mut |p, n| {
        progress.add(p, n)
    })
    .and_then(|()| copy::verify(&bmap, &dev, &mut buf, &mut |p, n| progress.add(p, n)));
    progress.end();
    if let Err(e) = result {
        return fail(e.exit_code(), e);
    }
    drop(dev);
    println!(
        "{} written to {} and verified: {} in {} range(s), {} of {} blocks of {} bytes, {:.1} s.",
        opts.image.display(),
        opts.device.display(),
        mb(bmap.mapped_bytes()),
        bmap.ranges().len(),
        bmap.mapped_blocks(),
        bmap.blocks_count(),
        bmap.block_size(),
        started.elapsed().as_secs_f64()
    );
    println!("It is safe to remove {} ({name}).", opts.device.display());
    ExitCode::SUCCESS
}

/// Asks on the terminal; `Err` says why the write is not confirmed.
fn confirm(opts: &Opts, facts: &device::Facts) -> Result<(), String> {
    if !io::stdin().is_terminal() {
        return Err("not confirmed: add --yes (standard input is not a terminal to ask on)".into());
    }
    let model = if facts.model.is_empty() {
        String::new()
    } else {
        format!("{}, ", facts.model)
    };
    eprint!(
        "Write {} to {} ({model}{})? Everything on it will be lost. Type yes: ",
        opts.image.display(),
        opts.device.display(),
        mb(facts.size.unwrap_or(0)),
    );
    let _ = io::stderr().flush();
    let mut answer = String::new();
    io::stdin()
        .lock()
        .take(64)
        .read_line(&mut answer)
        .map_err(|e| format!("not confirmed: {e}"))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err("not confirmed; nothing was written".into())
    }
}

/// One progress line per phase on stderr, rewritten with `\r`: percent
/// and MB/s. Silent when stderr is not a terminal.
struct Progress {
    on: bool,
    total: u64,
    phase: Option<Phase>,
    done: u64,
    /// `done` when the line was last drawn.
    shown: u64,
    started: Instant,
    drawn: Instant,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            on: io::stderr().is_terminal(),
            total: total.max(1),
            phase: None,
            done: 0,
            shown: 0,
            started: now,
            drawn: now,
        }
    }

    fn add(&mut self, phase: Phase, n: u64) {
        if self.phase != Some(phase) {
            self.end();
            self.phase = Some(phase);
            self.done = 0;
            self.shown = 0;
            self.started = Instant::now();
        }
        self.done += n;
        if self.on && (self.drawn.elapsed() >= PROGRESS_EVERY || self.done >= self.total) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let Some(phase) = self.phase else { return };
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r{:<15}{:>4}%  {:>8.1} MB/s ",
            phase.label(),
            self.done * 100 / self.total,
            self.done as f64 / 1e6 / secs
        );
        self.drawn = Instant::now();
        self.shown = self.done;
    }

    /// Ends the current phase's line.
    fn end(&mut self) {
        if self.on && self.phase.is_some() {
            if self.shown != self.done {
                self.draw();
            }
            eprintln!();
        }
        self.phase = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn options_and_both_words_are_required() {
        let o = parse(argv(&[
            "--bmap",
            "x.bmap",
            "--force-non-removable",
            "/dev/mmcblk0",
            "-y",
            "a.img",
            "/dev/mmcblk0",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            o,
            Opts {
                bmap: Some("x.bmap".into()),
                force: Some("/dev/mmcblk0".into()),
                yes: true,
                image: "a.img".into(),
                device: "/dev/mmcblk0".into(),
            }
        );
        assert_eq!(parse(argv(&["--help"])), Ok(None));
        assert!(parse(argv(&["a.img"])).is_err());
        assert!(parse(argv(&["a.img", "/dev/sdb", "/dev/sdc"])).is_err());
        assert!(parse(argv(&["--bmap"])).is_err());
        assert!(parse(argv(&["--force", "a.img", "/dev/sdb"])).is_err());
    }

    #[test]
    fn the_bmap_sits_beside_the_image() {
        assert_eq!(
            default_bmap(Path::new("out/q/pocobelle-q.img")),
            Path::new("out/q/pocobelle-q.bmap")
        );
        assert_eq!(
            default_bmap(Path::new("disk.raw")),
            Path::new("disk.raw.bmap")
        );
        assert_eq!(default_bmap(Path::new("img")), Path::new("img.bmap"));
    }
}
