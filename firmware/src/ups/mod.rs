//! The UPS: what Network UPS Tools' upsd says about the power, and what
//! the board should do about it.
//!
//! - `proto`: the upsd network protocol, sans-I/O (requests encoded,
//!   reply lines parsed with named bounds, `ups.status` decoded).
//!
//! This module decides nothing about services itself. It never runs
//! NUT's driver or upsd (init supervises them in local mode).

pub mod proto;

pub use self::proto::{ProtoError, Reading, Status};
