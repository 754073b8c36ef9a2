//! Mail policy: what the board accepts, from whom, and what it says about
//! it. `relay` decides who may send to which domain (never an open relay);
//! the anti-spam checks of a home backup MX live beside it, one module a
//! check, each configured under `[mail.policy]`: `recipients` (valid
//! users of the backup-MX domains), `greeting` (greeting delay, early
//! talkers), `limits` (per-client counts) and `greylist`.
//!
//! The rule above all: a check that could not be completed (a timeout, a
//! SERVFAIL, a lookup still running) gives a temporary answer (4xx) at
//! most, never a rejection. Only a real answer can make a 5xx.
//!
//! Message authentication (`dkim`, `dmarc`, `authres`), at DATA end:
//! feed each chunk to a `dkim::Verifier` as it is spooled; at the final
//! dot, `finish()`, resolve `key_names()` and `dmarc::query_names(from)`
//! (TXT, through the local cache; `from` = `dmarc::from_domain(head)`),
//! then `verify(&answers, now)`, `dmarc::evaluate(from, spf, &dkim,
//! &answers)`, `verdict.reply(config.dmarc.reject, roll)` (a 550 only for
//! a real fail under p=reject), and prepend `authres::format(...)` after
//! dropping incoming fields for which `authres::claims_authserv_id` holds.

pub mod authres;
pub mod dkim;
pub mod dmarc;
pub mod greeting;
pub mod greylist;
pub mod limits;
pub mod recipients;
pub mod relay;

pub use relay::Policy;
