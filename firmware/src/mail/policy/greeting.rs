//! The greeting delay and early talkers (`[mail.policy.greeting]`): the
//! 220 greeting waits a few seconds, longer when the session slots are
//! mostly taken; a client that sends anything before it is a spam engine
//! that does not speak SMTP (it does not wait for the server) and is
//! refused with 554 5.5.1, then the connection is closed. Relay networks
//! get no delay. Pure decisions: the listener owns the socket and timer.

use std::time::Duration;

use crate::config::policy::GreetingConfig;
use crate::smtp::Reply;

/// How long to hold the greeting: `delay_ms` while at most half of the
/// `limit` session slots are `busy`, then growing linearly to
/// `max_delay_ms` when all are. 0 when `delay_ms` is 0 (the check is off).
pub fn delay(config: &GreetingConfig, busy: usize, limit: usize) -> Duration {
    let base = config.delay_ms;
    if base == 0 || limit == 0 {
        return Duration::from_millis(base);
    }
    let half = limit as u64 / 2;
    let busy = (busy as u64).min(limit as u64);
    let extra = if busy <= half {
        0
    } else {
        let span = limit as u64 - half;
        config.max_delay_ms.saturating_sub(base) * (busy - half) / span
    };
    Duration::from_millis(base + extra)
}

/// The reply to a client that talked before the greeting (then closed).
pub fn early_talker() -> Reply {
    Reply::new(554, "5.5.1", "Protocol error: talked before the greeting")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GreetingConfig {
        GreetingConfig {
            delay_ms: 3000,
            max_delay_ms: 10_000,
        }
    }

    #[test]
    fn the_delay_grows_with_load_up_to_the_max() {
        let ms = |busy, limit| delay(&config(), busy, limit).as_millis();
        assert_eq!(ms(0, 4), 3000);
        assert_eq!(ms(2, 4), 3000);
        assert_eq!(ms(3, 4), 6500);
        assert_eq!(ms(4, 4), 10_000);
        assert_eq!(ms(9, 4), 10_000);
        assert_eq!(ms(1, 1), 10_000);
        let off = GreetingConfig {
            delay_ms: 0,
            max_delay_ms: 10_000,
        };
        assert_eq!(delay(&off, 4, 4), Duration::ZERO);
    }

    #[test]
    fn early_talkers_get_554_5_5_1() {
        let r = early_talker();
        assert_eq!((r.code, r.enhanced), (554, Some("5.5.1")));
    }
}
