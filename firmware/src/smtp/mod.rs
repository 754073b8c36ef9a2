//! The SMTP protocol core, sans-I/O: command parsing, replies and the
//! server session state machine; the client side's reply parser, command
//! encoders, DATA encoder and transaction. Nothing in here opens a socket,
//! reads a file or the clock; `mail/` and `sendmail` drive it.

pub mod auth;
pub mod client;
pub mod command;
pub mod hops;
pub mod reply;
pub mod session;

#[allow(unused_imports)]
pub use command::{Domain, Mailbox, ReversePath};
pub use reply::Reply;
#[allow(unused_imports)]
pub use session::{Envelope, Event, Gate, Session, Settings};
