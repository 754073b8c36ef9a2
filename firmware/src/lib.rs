//! The `pocobelle` library: every module of the firmware. The binary
//! (`main.rs`) only calls [`applet::dispatch`]; the library exists so that
//! `fuzz/` and `bench/` can link the real parsers and protocol cores. The
//! modules they reach are `pub`; the rest stay private to the crate.

pub mod applet;
pub mod config;
pub mod control;
pub mod dns;
// A host tool: left out of the boards' binary, where its text would be
// resident in every process for nothing.
#[cfg(not(target_arch = "arm"))]
pub mod flash;
pub mod init;
mod logging;
mod sys;
mod tls;
pub mod ups;

pub mod mail;
pub mod smtp;
