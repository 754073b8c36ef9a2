//! Start order: services start in their listed order; a service with
//! `ready = "primed"` holds back the ones after it until it reports primed
//! or the budget (`init.primed_budget_secs`) since its start has passed.
//! With the defaults: dns, wait for primed (or the budget), then mail.
//! A held service (mail while the UPS says power is not steady) is
//! skipped: the ones after it start, and it starts when released.
//! Pure: the supervisor feeds in what has started and what is ready.

use crate::config::Readiness;

/// The next thing the supervisor does about starting services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start the service at this index.
    Start {
        index: usize,
        /// Earlier services that are still not primed (their budget ran out).
        unprimed_before: bool,
    },
    /// Nothing to start before this time (ms since boot) unless a service
    /// becomes ready first.
    WaitUntil(u64),
    /// Every service has been started once.
    Done,
}

/// One service as the start order sees it.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub readiness: Readiness,
    /// When it was first started (ms since boot).
    pub started_ms: Option<u64>,
    pub ready: bool,
    /// Held back by init (power); skipped until released.
    pub held: bool,
}

/// Decides the next start step.
pub fn next_step(slots: &[Slot], budget_ms: u64, now_ms: u64) -> Step {
    let mut unprimed_before = false;
    for (index, s) in slots.iter().enumerate() {
        let Some(started) = s.started_ms else {
            if s.held {
                continue;
            }
            return Step::Start {
                index,
                unprimed_before,
            };
        };
        if s.readiness == Readiness::Primed && !s.ready {
            let deadline = started.saturating_add(budget_ms);
            if now_ms < deadline {
                return Step::WaitUntil(deadline);
            }
            unprimed_before = true;
        }
    }
    Step::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns_mail() -> Vec<Slot> {
        vec![
            Slot {
                readiness: Readiness::Primed,
                started_ms: None,
                ready: false,
                held: false,
            },
            Slot {
                readiness: Readiness::None,
                started_ms: None,
                ready: false,
                held: false,
            },
        ]
    }

    #[test]
    fn dns_first_then_mail_once_primed() {
        let mut s = dns_mail();
        assert_eq!(
            next_step(&s, 30_000, 0),
            Step::Start {
                index: 0,
                unprimed_before: false
            }
        );
        s[0].started_ms = Some(100);
        assert_eq!(next_step(&s, 30_000, 5_000), Step::WaitUntil(30_100));
        s[0].ready = true;
        assert_eq!(
            next_step(&s, 30_000, 5_000),
            Step::Start {
                index: 1,
                unprimed_before: false
            }
        );
        s[1].started_ms = Some(5_000);
        assert_eq!(next_step(&s, 30_000, 5_001), Step::Done);
    }

    #[test]
    fn budget_lets_mail_start_without_primed_dns() {
        let mut s = dns_mail();
        s[0].started_ms = Some(0);
        assert_eq!(next_step(&s, 30_000, 29_999), Step::WaitUntil(30_000));
        assert_eq!(
            next_step(&s, 30_000, 30_000),
            Step::Start {
                index: 1,
                unprimed_before: true
            }
        );
    }

    #[test]
    fn services_without_readiness_start_back_to_back() {
        let s = vec![
            Slot {
                readiness: Readiness::None,
                started_ms: Some(0),
                ready: false,
                held: false,
            };
            3
        ];
        assert_eq!(next_step(&s, 1, 0), Step::Done);
        assert_eq!(next_step(&[], 1, 0), Step::Done);
    }

    #[test]
    fn a_held_service_is_skipped_until_released() {
        // dns, mail (held by the UPS), sntp.
        let mut s = dns_mail();
        s.push(Slot {
            readiness: Readiness::None,
            started_ms: None,
            ready: false,
            held: false,
        });
        s[0].started_ms = Some(0);
        s[0].ready = true;
        s[1].held = true;
        assert_eq!(
            next_step(&s, 30_000, 10),
            Step::Start {
                index: 2,
                unprimed_before: false
            }
        );
        s[2].started_ms = Some(10);
        assert_eq!(next_step(&s, 30_000, 20), Step::Done);
        s[1].held = false;
        assert_eq!(
            next_step(&s, 30_000, 90_000),
            Step::Start {
                index: 1,
                unprimed_before: false
            }
        );
    }
}
