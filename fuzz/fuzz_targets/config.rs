//! The configuration file (config::Config::parse: TOML, the schema, the
//! bounds). An error names the file and, when it has one, a line within
//! the file; a configuration that passes is valid by `validate`, and
//! everything the services build from it at start succeeds (what
//! check-config accepts must start): the DNS local data, whose answers
//! then walk, and the forwarder list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::config::{Config, ConfigError, MAX_CONFIG_BYTES};
use pocobelle::dns::local::LocalData;
use pocobelle::dns::upstream::Upstreams;
use pocobelle::dns::wire::{self, Key, Parsed};
use std::path::Path;

const PATH: &str = "/etc/pocobelle.toml";

fuzz_target!(|data: &[u8]| {
    if data.len() as u64 > MAX_CONFIG_BYTES {
        return; // Config::load refuses it before parsing
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new(PATH), text) {
        Ok(c) => {
            c.validate().expect("a parsed configuration is valid");
            let local = LocalData::from_config(&c.dns)
                .unwrap_or_else(|e| panic!("valid configuration, but the DNS cannot start: {e}"));
            let _ = Upstreams::from_config(&c.dns);
            for h in c.dns.hosts.iter().take(4) {
                let name = if h.name.trim_end_matches('.').contains('.') {
                    h.name.clone()
                } else {
                    format!("{}.{}", h.name, c.dns.local_domain)
                };
                let Ok(qname) = wire::name_from_text(&name) else {
                    panic!("host name {name:?} passed validation");
                };
                for t in [wire::TYPE_A, wire::TYPE_AAAA, wire::TYPE_PTR] {
                    let up = wire::build_upstream_query(7, &Key::new(&qname, t, wire::CLASS_IN));
                    let Parsed::Query(q) = wire::parse_query(&up) else {
                        panic!("our query for {name} does not parse");
                    };
                    if let Some(reply) = local.answer(&q) {
                        wire::walk(&reply).expect("a local answer walks");
                    }
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with(PATH), "{msg}");
            let lines = text.lines().count().max(1);
            match e {
                ConfigError::Parse { line: Some(l), .. }
                | ConfigError::Invalid { line: Some(l), .. } => {
                    assert!(l >= 1 && l <= lines + 1, "line {l} of {lines}");
                }
                _ => {}
            }
        }
    }
});
