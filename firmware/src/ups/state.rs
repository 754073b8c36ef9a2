//! The power state machine: fed each poll's reading of the UPS (or the
//! fact that there was none) and the time, it keeps what the power is
//! doing and derives what the board should do about it: hold mail at
//! boot, throttle delivery, shut down now. Pure: no I/O, no clock of its
//! own (`now` is passed in), no panics.
//!
//! The rules, after NUT's `upsmon`:
//! - `OB LB` (on battery, low battery) or `FSD` is critical: shut down.
//!   `OL LB` (charging after an outage) is not.
//! - A UPS last seen on battery that stays silent (upsd unreachable, or
//!   its driver gone or stale) for `dead_time` counts as low battery.
//!   Silent while last seen on line is only "unknown": no action.
//! - Optionally, on battery with a reported runtime under a floor.
//! - A shutdown decision is a latch: later readings never cancel it
//!   (a half-finished shutdown must not be undone by a flickering mains).
//! - Mail at boot: the first reading decides. On battery with a charge
//!   under `start_min_charge` (or no charge reported), or on line with
//!   such a charge (mains has only just come back), mail is held; it is
//!   released once the mains has been back continuously for
//!   `settle_time`, or, still on battery, the charge reads at or above
//!   the threshold. A return to battery restarts the settle time. Once
//!   released, never held again (running mail is throttled instead).

use std::time::{Duration, Instant};

use super::proto::{Reading, Status};

/// The thresholds the machine decides with (from `[ups]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Silence after an on-battery reading that counts as low battery.
    pub dead_time: Duration,
    /// Charge, percent, under which mail is held at boot.
    pub start_min_charge: u8,
    /// How long the mains must be back before held mail starts.
    pub settle_time: Duration,
    /// On battery, a reported runtime under this many seconds is
    /// treated as low battery.
    pub shutdown_on_runtime_below: Option<u32>,
}

/// What one poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A fresh reading.
    Reading(Reading),
    /// No reading: upsd unreachable or answering without data.
    Silent,
}

/// Where the power stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// No reading yet, or silent while last seen on line, or a status
    /// that is neither on line nor on battery.
    Unknown,
    OnLine,
    /// On battery since `since` (the first on-battery reading of this
    /// outage).
    OnBattery {
        since: Instant,
    },
    /// Critical: low battery on battery, runtime under the floor, or
    /// silent after on battery. Shutdown is decided.
    LowBattery,
    /// The forced-shutdown flag is set. Shutdown is decided.
    ForcedShutdown,
}

/// Why the board must shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// The UPS reports `OB LB`.
    LowBattery,
    /// The UPS reports `FSD`.
    ForcedShutdown,
    /// The UPS was last seen on battery and has been silent for the dead
    /// time.
    Silent,
    /// On battery with a runtime under `shutdown_on_runtime_below`.
    RuntimeLow,
}

impl std::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ShutdownReason::LowBattery => "UPS on battery with low battery",
            ShutdownReason::ForcedShutdown => "UPS forced shutdown (FSD)",
            ShutdownReason::Silent => "UPS silent for the dead time after running on battery",
            ShutdownReason::RuntimeLow => "UPS runtime under the configured floor",
        })
    }
}

/// Everything the rest of the board needs to know, as of one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerView {
    pub state: PowerState,
    /// Mail must not start (boot only; see the module notes).
    pub hold_mail: bool,
    /// Outbound delivery should drop to a trickle (on battery, or
    /// shutting down).
    pub throttle: bool,
    /// Shut down now, and why.
    pub shutdown: Option<ShutdownReason>,
    /// Battery charge, percent, from the last reading.
    pub charge: Option<u8>,
    /// Expected runtime: the last reported runtime, less the time spent
    /// on battery since that reading.
    pub runtime: Option<Duration>,
    /// The status flags of the last reading.
    pub status: Option<Status>,
    /// Whether the last poll got a reading.
    pub reachable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// No reading yet: nothing to hold mail for.
    Undecided,
    /// Held; `online_since` is when the current on-line spell began.
    Held {
        online_since: Option<Instant>,
    },
    Released,
}

/// The machine. Feed it with [`PowerMachine::observe`].
#[derive(Debug, Clone)]
pub struct PowerMachine {
    params: Params,
    state: PowerState,
    last: Option<(Reading, Instant)>,
    hold: Hold,
    shutdown: Option<ShutdownReason>,
    reachable: bool,
}

impl PowerMachine {
    pub fn new(params: Params) -> PowerMachine {
        PowerMachine {
            params,
            state: PowerState::Unknown,
            last: None,
            hold: Hold::Undecided,
            shutdown: None,
            reachable: false,
        }
    }

    /// Takes one poll's result at `now` (times must not go backwards;
    /// if they do, elapsed times count as zero) and returns the view.
    pub fn observe(&mut self, obs: Observation, now: Instant) -> PowerView {
        match obs {
            Observation::Reading(r) => self.reading(r, now),
            Observation::Silent => self.silent(now),
        }
        self.view(now)
    }

    fn reading(&mut self, r: Reading, now: Instant) {
        self.reachable = true;
        self.last = Some((r, now));
        let ob = r.status.contains(Status::OB);
        let ol = r.status.contains(Status::OL) && !ob;
        self.update_hold(&r, ob, ol, now);
        if self.shutdown.is_some() {
            return;
        }
        let runtime_low = match (self.params.shutdown_on_runtime_below, r.runtime) {
            (Some(floor), Some(rt)) => rt < floor,
            _ => false,
        };
        self.state = if r.status.contains(Status::FSD) {
            self.shutdown = Some(ShutdownReason::ForcedShutdown);
            PowerState::ForcedShutdown
        } else if ob && r.status.contains(Status::LB) {
            self.shutdown = Some(ShutdownReason::LowBattery);
            PowerState::LowBattery
        } else if ob && runtime_low {
            self.shutdown = Some(ShutdownReason::RuntimeLow);
            PowerState::LowBattery
        } else if ob {
            match self.state {
                PowerState::OnBattery { since } => PowerState::OnBattery { since },
                _ => PowerState::OnBattery { since: now },
            }
        } else if ol {
            PowerState::OnLine
        } else {
            PowerState::Unknown
        };
    }

    fn update_hold(&mut self, r: &Reading, ob: bool, ol: bool, now: Instant) {
        let low = r.charge.is_none_or(|c| c < self.params.start_min_charge);
        self.hold = match self.hold {
            Hold::Undecided if ob && low => Hold::Held { online_since: None },
            Hold::Undecided if ol && r.charge.is_some() && low => Hold::Held {
                online_since: Some(now),
            },
            Hold::Undecided if ol || ob => Hold::Released,
            Hold::Undecided => Hold::Undecided,
            Hold::Held { online_since } if ol => {
                let since = online_since.unwrap_or(now);
                if now.saturating_duration_since(since) >= self.params.settle_time {
                    Hold::Released
                } else {
                    Hold::Held {
                        online_since: Some(since),
                    }
                }
            }
            Hold::Held { .. } if ob && !low => Hold::Released,
            Hold::Held { .. } if ob => Hold::Held { online_since: None },
            Hold::Held { online_since } => Hold::Held { online_since },
            Hold::Released => Hold::Released,
        };
    }

    fn silent(&mut self, now: Instant) {
        self.reachable = false;
        if self.shutdown.is_some() {
            return;
        }
        let last_ob = self.last.filter(|(r, _)| r.status.contains(Status::OB));
        self.state = match last_ob {
            Some((_, seen)) if now.saturating_duration_since(seen) >= self.params.dead_time => {
                self.shutdown = Some(ShutdownReason::Silent);
                PowerState::LowBattery
            }
            Some((_, seen)) => match self.state {
                PowerState::OnBattery { since } => PowerState::OnBattery { since },
                _ => PowerState::OnBattery { since: seen },
            },
            None => PowerState::Unknown,
        };
    }

    /// The view at `now`, without a new observation.
    pub fn view(&self, now: Instant) -> PowerView {
        let on_battery = matches!(
            self.state,
            PowerState::OnBattery { .. } | PowerState::LowBattery | PowerState::ForcedShutdown
        );
        let runtime = self.last.and_then(|(r, seen)| {
            let rt = Duration::from_secs(u64::from(r.runtime?));
            if r.status.contains(Status::OB) {
                Some(rt.saturating_sub(now.saturating_duration_since(seen)))
            } else {
                Some(rt)
            }
        });
        PowerView {
            state: self.state,
            hold_mail: matches!(self.hold, Hold::Held { .. }),
            throttle: on_battery,
            shutdown: self.shutdown,
            charge: self.last.and_then(|(r, _)| r.charge),
            runtime,
            status: self.last.map(|(r, _)| r.status),
            reachable: self.reachable,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: Params = Params {
        dead_time: Duration::from_secs(15),
        start_min_charge: 30,
        settle_time: Duration::from_secs(60),
        shutdown_on_runtime_below: None,
    };

    fn reading(status: &str, charge: u8, runtime: u32) -> Observation {
        Observation::Reading(Reading {
            status: Status::parse(status),
            charge: Some(charge),
            runtime: Some(runtime),
        })
    }

    /// Plays `steps` (seconds since start, observation), one poll each,
    /// and returns the view after each.
    fn play(params: Params, steps: &[(u64, Observation)]) -> (Instant, Vec<PowerView>) {
        let t0 = Instant::now();
        let mut m = PowerMachine::new(params);
        let views = steps
            .iter()
            .map(|(s, o)| m.observe(*o, t0 + Duration::from_secs(*s)))
            .collect();
        (t0, views)
    }

    fn ol() -> Observation {
        reading("OL", 100, 1800)
    }

    #[test]
    fn on_line_does_nothing() {
        let (_, v) = play(PARAMS, &[(0, ol()), (5, ol()), (10, ol())]);
        for view in &v {
            assert_eq!(view.state, PowerState::OnLine);
            assert!(!view.hold_mail && !view.throttle && view.shutdown.is_none());
            assert!(view.reachable);
        }
        assert_eq!(v[2].charge, Some(100));
        assert_eq!(v[2].runtime, Some(Duration::from_secs(1800)));
    }

    #[test]
    fn blip_on_battery_takes_no_action() {
        let (t0, v) = play(
            PARAMS,
            &[
                (0, ol()),
                (5, reading("OB DISCHRG", 99, 1700)),
                (10, reading("OB DISCHRG", 98, 1650)),
                (15, reading("OL CHRG", 98, 1700)),
            ],
        );
        assert_eq!(
            v[1].state,
            PowerState::OnBattery {
                since: t0 + Duration::from_secs(5)
            }
        );
        assert_eq!(v[2].state, v[1].state, "the outage keeps its start");
        assert!(v[1].throttle && v[2].throttle);
        assert!(v.iter().all(|v| v.shutdown.is_none() && !v.hold_mail));
        assert_eq!(v[3].state, PowerState::OnLine);
        assert!(!v[3].throttle);
    }

    #[test]
    fn low_battery_on_battery_shuts_down_and_latches() {
        let (_, v) = play(
            PARAMS,
            &[
                (0, ol()),
                (5, reading("OB DISCHRG", 40, 600)),
                (10, reading("OB DISCHRG LB", 9, 60)),
                (15, reading("OL CHRG", 9, 60)),
            ],
        );
        assert!(v[1].shutdown.is_none());
        assert_eq!(v[2].state, PowerState::LowBattery);
        assert_eq!(v[2].shutdown, Some(ShutdownReason::LowBattery));
        // Mains back mid-shutdown: the decision stands.
        assert_eq!(v[3].state, PowerState::LowBattery);
        assert_eq!(v[3].shutdown, Some(ShutdownReason::LowBattery));
        assert_eq!(v[3].charge, Some(9));
    }

    #[test]
    fn low_battery_on_line_is_not_critical() {
        let (_, v) = play(PARAMS, &[(0, ol()), (5, reading("OL CHRG LB", 5, 30))]);
        assert_eq!(v[1].state, PowerState::OnLine);
        assert!(v[1].shutdown.is_none());
    }

    #[test]
    fn silence_after_on_battery_shuts_down_after_dead_time() {
        let ob = reading("OB DISCHRG", 80, 1200);
        let (t0, v) = play(
            PARAMS,
            &[
                (0, ol()),
                (5, ob),
                (10, Observation::Silent),
                (15, Observation::Silent),
                (19, Observation::Silent),
                (20, Observation::Silent),
            ],
        );
        let since = t0 + Duration::from_secs(5);
        for view in &v[2..5] {
            assert_eq!(view.state, PowerState::OnBattery { since });
            assert!(view.shutdown.is_none() && view.throttle && !view.reachable);
        }
        // The runtime counts down while silent on battery.
        assert_eq!(v[4].runtime, Some(Duration::from_secs(1200 - 14)));
        assert_eq!(v[5].state, PowerState::LowBattery);
        assert_eq!(v[5].shutdown, Some(ShutdownReason::Silent));
    }

    #[test]
    fn silence_on_line_is_only_unknown() {
        let (_, v) = play(
            PARAMS,
            &[
                (0, ol()),
                (5, Observation::Silent),
                (600, Observation::Silent),
                (605, ol()),
            ],
        );
        assert_eq!(v[1].state, PowerState::Unknown);
        assert_eq!(v[2].state, PowerState::Unknown);
        assert!(v[1..3].iter().all(|v| v.shutdown.is_none() && !v.throttle));
        assert_eq!(v[3].state, PowerState::OnLine);
        // Never seen at all: unknown, mail not held.
        let (_, v) = play(
            PARAMS,
            &[(0, Observation::Silent), (100, Observation::Silent)],
        );
        assert!(
            v.iter()
                .all(|v| v.state == PowerState::Unknown && !v.hold_mail)
        );
    }

    #[test]
    fn forced_shutdown() {
        let (_, v) = play(PARAMS, &[(0, ol()), (5, reading("FSD OL", 100, 1800))]);
        assert_eq!(v[1].state, PowerState::ForcedShutdown);
        assert_eq!(v[1].shutdown, Some(ShutdownReason::ForcedShutdown));
        let (_, v) = play(PARAMS, &[(0, reading("FSD OB LB", 10, 60))]);
        assert_eq!(v[0].shutdown, Some(ShutdownReason::ForcedShutdown));
    }

    #[test]
    fn runtime_floor_shuts_down_on_battery_only() {
        let p = Params {
            shutdown_on_runtime_below: Some(300),
            ..PARAMS
        };
        let (_, v) = play(
            p,
            &[
                (0, reading("OL", 100, 200)),
                (5, reading("OB DISCHRG", 90, 400)),
                (10, reading("OB DISCHRG", 80, 299)),
            ],
        );
        assert!(v[0].shutdown.is_none() && v[1].shutdown.is_none());
        assert_eq!(v[2].shutdown, Some(ShutdownReason::RuntimeLow));
    }

    #[test]
    fn boot_on_battery_with_low_charge_holds_mail_until_settled() {
        let (_, v) = play(
            PARAMS,
            &[
                (0, reading("OB DISCHRG", 20, 500)),
                (5, reading("OB DISCHRG", 19, 480)),
                (10, reading("OL CHRG", 19, 480)),
                (40, reading("OL CHRG", 22, 500)),
                (69, reading("OL CHRG", 25, 520)),
                (70, reading("OL CHRG", 25, 520)),
                (75, reading("OB DISCHRG", 25, 520)),
            ],
        );
        assert!(v[0].hold_mail && v[0].throttle);
        assert!(v[1].hold_mail);
        assert!(v[2].hold_mail && v[3].hold_mail && v[4].hold_mail);
        assert!(!v[5].hold_mail, "released 60 s after mains came back");
        assert!(!v[6].hold_mail, "never held again once released");
        assert!(v[6].throttle);
    }

    #[test]
    fn flicker_during_settle_restarts_the_settle_time() {
        let (_, v) = play(
            PARAMS,
            &[
                (0, reading("OB DISCHRG", 20, 500)),
                (10, reading("OL CHRG", 20, 500)),
                (50, reading("OB DISCHRG", 20, 500)),
                (55, reading("OL CHRG", 20, 500)),
                (71, reading("OL CHRG", 21, 500)),
                (114, reading("OL CHRG", 21, 500)),
                (115, reading("OL CHRG", 21, 500)),
            ],
        );
        assert!(v[..6].iter().all(|v| v.hold_mail), "{v:?}");
        assert!(!v[6].hold_mail);
    }

    #[test]
    fn boot_hold_variants() {
        // On battery with enough charge: mail starts, throttled.
        let (_, v) = play(PARAMS, &[(0, reading("OB DISCHRG", 30, 900))]);
        assert!(!v[0].hold_mail && v[0].throttle);
        // On battery, charge unknown: held.
        let no_charge = Observation::Reading(Reading {
            status: Status::OB,
            charge: None,
            runtime: None,
        });
        let (_, v) = play(PARAMS, &[(0, no_charge)]);
        assert!(v[0].hold_mail);
        assert_eq!(v[0].runtime, None);
        // On battery, the charge recovers above the threshold: released.
        let (_, v) = play(
            PARAMS,
            &[(0, reading("OB", 25, 500)), (5, reading("OB", 31, 600))],
        );
        assert!(v[0].hold_mail && !v[1].hold_mail);
        // On line just after an outage, charge low: the settle time.
        let (_, v) = play(
            PARAMS,
            &[
                (0, reading("OL CHRG", 10, 100)),
                (30, Observation::Silent),
                (59, reading("OL CHRG", 12, 120)),
                (60, reading("OL CHRG", 12, 120)),
            ],
        );
        assert!(v[0].hold_mail && v[1].hold_mail && v[2].hold_mail);
        assert!(!v[3].hold_mail);
        // On line with a good charge: nothing held.
        let (_, v) = play(PARAMS, &[(0, ol())]);
        assert!(!v[0].hold_mail);
        // Silent first, then the first reading decides.
        let (_, v) = play(
            PARAMS,
            &[(0, Observation::Silent), (5, reading("OB", 5, 100))],
        );
        assert!(!v[0].hold_mail && v[1].hold_mail);
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut m = PowerMachine::new(PARAMS);
        m.observe(reading("OB", 50, 100), t0);
        let v = m.observe(Observation::Silent, t0 - Duration::from_secs(50));
        assert!(v.shutdown.is_none());
        assert_eq!(v.runtime, Some(Duration::from_secs(100)));
    }
}
