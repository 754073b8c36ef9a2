//! `pocobelle ups`: the UPS monitor init supervises when `[ups]` is
//! configured. It polls upsd (`crate::ups::Monitor`: the local one init
//! runs, or one on the LAN), and hands each new view to init and mail
//! through `<run_dir>/power` (`crate::init::power`). It decides what the
//! power state means (`crate::ups::state`); init and mail act on it.
//! `pocobelle ups status` prints the last view.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::init::power::{self, PowerFile, Supply};
use crate::ups::{Monitor, PowerState, PowerView};

const HELP: &str = "\
Usage: pocobelle ups [--config FILE]          watch the UPS of [ups] (run by init)
       pocobelle ups status [--config FILE]   print what the watch last saw
";

/// The power file for one view of the UPS `ups` (`name@address`).
pub fn power_file(v: &PowerView, ups: &str) -> PowerFile {
    let supply = match v.state {
        PowerState::Unknown => Supply::Unknown,
        PowerState::OnLine => Supply::OnLine,
        PowerState::OnBattery { .. } => Supply::OnBattery,
        PowerState::LowBattery => Supply::LowBattery,
        PowerState::ForcedShutdown => Supply::ForcedShutdown,
    };
    let detail = match (v.shutdown, v.reachable) {
        (Some(why), _) => why.to_string(),
        (None, false) => "upsd not answering".into(),
        (None, true) if v.hold_mail => "mail waits for steady mains".into(),
        (None, true) => String::new(),
    };
    PowerFile {
        supply,
        hold_mail: v.hold_mail,
        throttle: v.throttle,
        shutdown: v.shutdown.is_some(),
        charge: v.charge,
        runtime_secs: v.runtime.map(|d| d.as_secs().min(u32::MAX as u64) as u32),
        ups: ups.to_string(),
        detail,
    }
}

pub fn run(args: Vec<OsString>) -> ExitCode {
    let args = match super::parse_args("ups", HELP, args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let status = match args.words.first().and_then(|w| w.to_str()) {
        None if args.words.is_empty() => false,
        Some("status") if args.words.len() == 1 => true,
        _ => return super::usage_error("ups", format!("unexpected argument {:?}", args.words[0])),
    };
    let cfg = match super::load_config(&args.config_path()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let run_dir = cfg.system.run_dir.clone();
    let Some(u) = cfg.ups.clone() else {
        eprintln!("pocobelle ups: no [ups] in the configuration: no UPS is watched");
        // EX_CONFIG
        return ExitCode::from(78);
    };
    if status {
        return match power::read(&run_dir) {
            Some(Ok(f)) => {
                println!("{}", f.summary());
                ExitCode::SUCCESS
            }
            Some(Err(e)) => {
                eprintln!("pocobelle ups: {e}");
                ExitCode::FAILURE
            }
            None => {
                println!("no reading yet from {} ({})", u.name, u.socket_addr());
                // EX_UNAVAILABLE
                ExitCode::from(69)
            }
        };
    }
    crate::logging::init("ups", cfg.log.level.to_filter());
    let label = format!("{}@{}", u.name, u.socket_addr());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("watching {label} every {} s", u.poll_interval().as_secs());
    // Start-up (arguments, the configuration reader) is over: give back
    // its code (see `sys::text`).
    let released = crate::sys::text::release_startup_text();
    log::debug!("ups: {} KiB of start-up code released", released / 1024);
    rt.block_on(async {
        let mut rx = Monitor::spawn(&u);
        let mut last: Option<PowerFile> = None;
        // The first view is "no reading": nothing is written until the
        // first poll says something, so that init keeps mail waiting.
        while rx.changed().await.is_ok() {
            let f = power_file(&rx.borrow_and_update(), &label);
            if last.as_ref() == Some(&f) {
                continue;
            }
            if last.as_ref().map(|l| (l.supply, l.shutdown)) != Some((f.supply, f.shutdown)) {
                log::info!("{}", f.summary());
            }
            if let Err(e) = power::write(&run_dir, &f) {
                log::error!("{}: {e}", power::path(&run_dir).display());
            }
            last = Some(f);
        }
        log::error!("the UPS watch ended");
    });
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ups::ShutdownReason;
    use std::time::Duration;

    fn view(state: PowerState) -> PowerView {
        PowerView {
            state,
            hold_mail: false,
            throttle: false,
            shutdown: None,
            charge: Some(80),
            runtime: Some(Duration::from_secs(1_800)),
            status: None,
            reachable: true,
        }
    }

    #[test]
    fn views_become_power_files_init_acts_on() {
        let f = power_file(&view(PowerState::OnLine), "ups@127.0.0.1:3493");
        assert_eq!(f.supply, Supply::OnLine);
        assert!(!f.shutdown && !f.hold_mail);
        assert_eq!(f.runtime_secs, Some(1_800));
        let mut lb = view(PowerState::LowBattery);
        lb.shutdown = Some(ShutdownReason::LowBattery);
        lb.throttle = true;
        let f = power_file(&lb, "ups@127.0.0.1:3493");
        assert!(f.shutdown && f.throttle);
        assert_eq!(f.detail, "UPS on battery with low battery");
        let mut silent = view(PowerState::Unknown);
        silent.reachable = false;
        assert_eq!(power_file(&silent, "u").detail, "upsd not answering");
        // What init reads back is what was meant.
        let back = PowerFile::parse(&f.render()).unwrap();
        assert_eq!(back, f);
    }
}
