//! `pocobelle`: one static binary for the whole board. This file only
//! dispatches to an applet, chosen by the name the binary was called by
//! (`/sbin/init`, `/usr/sbin/sendmail`, ...) or by its first argument,
//! the way BusyBox does. Each applet lives in the library's `applet/`.

fn main() -> std::process::ExitCode {
    pocobelle::applet::dispatch(std::env::args_os().collect())
}
