//! What upsd sends the UPS client (ups::proto), cut into lines the way
//! the client reads them (LineSplitter, at most MAX_LINE bytes), each
//! line parsed as a reply, as the answer to `LIST VAR` (VarList, at
//! most MAX_VARS variables), `GET VAR` and an `OK` command, and read as
//! a `ups.status` value; each completed list (or error) is a poll fed
//! to the power state machine. Checks: lines within bounds, status flags
//! print and parse back, a charge is at most 100, a request argument
//! that encodes splits back to itself, a shutdown decision never goes
//! away, and on battery is always throttled.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pocobelle::ups::proto::{
    self, LineSplitter, MAX_LINE, MAX_VARS, ProtoError, Reading, Reply, Request, Status, VarList,
};
use pocobelle::ups::{Observation, Params, PowerMachine, PowerState};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut machine = PowerMachine::new(Params {
        dead_time: Duration::from_secs(15),
        start_min_charge: 30,
        settle_time: Duration::from_secs(60),
        shutdown_on_runtime_below: Some(120),
    });
    let mut decided = false;
    let mut split = LineSplitter::default();
    let mut list = VarList::new("ups");
    let mut rest = data;
    let mut polls = 0u64;
    while !rest.is_empty() {
        let (line, used) = split.push(rest);
        assert!(
            used > 0 && used <= rest.len(),
            "the splitter always makes progress"
        );
        rest = &rest[used..];
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => {
                assert!(rest.is_empty() && split.pending() < MAX_LINE);
                break;
            }
            Err(e) => {
                assert_eq!(e, ProtoError::LineTooLong);
                assert_eq!(split.pending(), 0);
                list = VarList::new("ups");
                continue;
            }
        };
        assert!(line.len() <= MAX_LINE && line.ends_with(b"\n"));
        if let Ok(Reply::Var { ups, name, value }) = Reply::parse(&line) {
            assert!(ups.len() + name.len() + value.len() <= MAX_LINE);
            assert_eq!(proto::parse_get_var(&ups, &name, &line), Ok(value));
        }
        let _ = proto::parse_ok(&line);
        if let Ok(text) = std::str::from_utf8(&line) {
            let s = Status::parse(text);
            assert_eq!(Status::parse(&s.to_string()), s);
            let text = text.trim_end_matches('\n');
            if let Ok(req) = Request::Password(text).encode() {
                let enc = std::str::from_utf8(&req).unwrap();
                assert!(enc.ends_with('\n') && enc.matches('\n').count() == 1);
                let words = proto::split_words(enc.trim_end()).unwrap();
                assert_eq!(words, ["PASSWORD", text]);
            }
        }
        let obs = match list.push(&line) {
            Ok(None) => continue,
            Ok(Some(vars)) => {
                assert!(vars.len() <= MAX_VARS);
                let r = Reading::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v.as_str())));
                if let Some(r) = r {
                    assert!(r.charge.is_none_or(|c| c <= 100));
                    assert!(!r.status.is_empty());
                }
                r.map_or(Observation::Silent, Observation::Reading)
            }
            Err(_) => Observation::Silent,
        };
        list = VarList::new("ups");
        polls += 1;
        let v = machine.observe(obs, t0 + Duration::from_secs(5 * polls));
        if decided {
            assert!(v.shutdown.is_some());
        }
        decided = v.shutdown.is_some();
        if matches!(v.state, PowerState::OnBattery { .. }) {
            assert!(v.throttle && v.shutdown.is_none());
        }
    }
});
