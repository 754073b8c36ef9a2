//! The mail router `pocobelle mail`: listener and admission, relay policy,
//! the durable spool, the scheduler and delivery. The SMTP protocol itself
//! lives in `smtp/` (sans-I/O); this module owns the I/O around it.

pub mod aliases;
pub mod auth;
pub mod client;
pub mod dsn;
pub mod listener;
pub mod lookup;
pub mod msgauth;
pub mod mx;
pub mod name;
pub mod policy;
pub mod queue;
pub mod scheduler;
pub mod service;
pub mod shacrypt;
pub mod spool;
