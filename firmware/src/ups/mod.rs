//! The UPS: what Network UPS Tools' upsd says about the power, and what
//! the board should do about it.
//!
//! - `proto`: the upsd network protocol, sans-I/O (requests encoded,
//!   reply lines parsed with named bounds, `ups.status` decoded).
//! - `state`: the pure power state machine (on line, on battery, low
//!   battery, forced shutdown, the dead-time rule) and its decisions.
//! - `client`: the tokio client that polls upsd, reconnects with backoff
//!   and publishes a [`PowerView`] through a `watch` channel.
//!
//! This module decides nothing about services itself: init reads the
//! [`PowerView`] (hold mail at boot, throttle delivery, shut down) and
//! acts. It never runs NUT's driver or upsd (init supervises them in
//! local mode, from the files `config::UpsConfig::nut_files` renders).

pub mod client;
pub mod proto;
pub mod state;

pub use self::client::{ClientError, Monitor, fsd};
pub use self::proto::{ProtoError, Reading, Status};
pub use self::state::{Observation, Params, PowerMachine, PowerState, PowerView, ShutdownReason};

impl crate::config::UpsConfig {
    /// The state machine's thresholds from `[ups]`.
    pub fn params(&self) -> Params {
        Params {
            dead_time: self.dead_time(),
            start_min_charge: self.start_min_charge,
            settle_time: self.settle_time(),
            shutdown_on_runtime_below: self.shutdown_on_runtime_below_secs,
        }
    }
}
