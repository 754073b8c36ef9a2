//! `pocobelle`: one static binary for the whole board. This file only
//! dispatches to an applet, chosen by the name the binary was called by
//! (`/sbin/init`, `/usr/sbin/sendmail`, ...) or by its first argument,
//! the way BusyBox does. Each applet lives in `applet/`.

mod applet;
mod config;
mod control;
mod dns;
// A host tool: left out of the boards' binary, where its text would be
// resident in every process for nothing.
#[cfg(not(target_arch = "arm"))]
mod flash;
mod init;
mod logging;
mod sys;
mod tls;

mod mail;
mod smtp;

fn main() -> std::process::ExitCode {
    applet::dispatch(std::env::args_os().collect())
}
