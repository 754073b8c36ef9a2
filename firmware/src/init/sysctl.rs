//! The VM settings for a small board on flash: how much memory the kernel
//! keeps free, when dirty pages are written back and how many may pile up.
//! [`compute`] is a pure function of RAM size and `[init.sysctl]`;
//! [`apply`] writes the result under /proc/sys and logs each value. This
//! module never reads RAM size itself and never retries a failed write.
//!
//! The reasoning: flash hates writes smaller than its erase block
//! (typically 128 KiB), so background writeback starts only when a batch
//! of several erase blocks is dirty and the flusher wakes rarely; but the
//! hard limit (`dirty_bytes`, where writers are throttled) stays a small
//! fraction of RAM, so a mail burst cannot turn the page cache into a
//! pile of dirty pages, and `min_free_kbytes` keeps a reserve for atomic
//! allocations (network buffers) under that burst.

use std::path::Path;

use crate::config::init::SysctlConfig;
use crate::sys::Sys;

/// The kernel always keeps at least this much free (KiB).
pub const MIN_FREE_FLOOR_KIB: u64 = 512;
/// Computed reserves never exceed this (KiB).
pub const MIN_FREE_CEIL_KIB: u64 = 16 * 1024;
/// The flash erase block writes are batched to (KiB).
pub const FLASH_BLOCK_KIB: u64 = 128;
/// Background writeback never starts below this many KiB of dirty data.
pub const BATCH_FLOOR_KIB: u64 = 4 * FLASH_BLOCK_KIB;
/// Computed batches never exceed this (KiB).
pub const BATCH_CEIL_KIB: u64 = 8 * 1024;
/// Dirty data may never exceed RAM divided by this.
pub const DIRTY_RAM_DIVISOR: u64 = 8;

/// The values written under /proc/sys/vm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSettings {
    pub min_free_kbytes: u64,
    pub dirty_background_bytes: u64,
    pub dirty_bytes: u64,
    pub dirty_expire_centisecs: u64,
    pub dirty_writeback_centisecs: u64,
    pub swappiness: u64,
}

/// On battery, the flusher wakes at most this rarely (centiseconds).
pub const ON_BATTERY_MAX_WRITEBACK_CS: u64 = 6000;

impl VmSettings {
    /// The settings while the board runs on its UPS's battery: dirty
    /// pages are written back in fewer, larger batches (the flusher wakes
    /// four times less often, pages may stay dirty twice as long), so the
    /// flash and the CPU draw less. Durability is not traded: the spool
    /// and the snapshot fsync what they acknowledge, and a low battery
    /// ends in a clean shutdown that syncs everything.
    pub fn on_battery(&self) -> VmSettings {
        VmSettings {
            dirty_writeback_centisecs: (self.dirty_writeback_centisecs * 4)
                .min(ON_BATTERY_MAX_WRITEBACK_CS)
                .max(self.dirty_writeback_centisecs),
            dirty_expire_centisecs: self.dirty_expire_centisecs * 2,
            ..*self
        }
    }

    /// `(sysctl name, value)` in the order they are applied.
    pub fn entries(&self) -> [(&'static str, u64); 6] {
        [
            ("vm.min_free_kbytes", self.min_free_kbytes),
            // The kernel rejects dirty_bytes below dirty_background_bytes
            // at write time only when both are bytes; writing the hard
            // limit first keeps every intermediate state valid when both
            // grow from the defaults.
            ("vm.dirty_bytes", self.dirty_bytes),
            ("vm.dirty_background_bytes", self.dirty_background_bytes),
            ("vm.dirty_expire_centisecs", self.dirty_expire_centisecs),
            (
                "vm.dirty_writeback_centisecs",
                self.dirty_writeback_centisecs,
            ),
            ("vm.swappiness", self.swappiness),
        ]
    }
}

fn round_down_block(kib: u64) -> u64 {
    (kib / FLASH_BLOCK_KIB) * FLASH_BLOCK_KIB
}

/// Computes the settings for a machine with `ram_kib` of RAM (MemTotal).
pub fn compute(ram_kib: u64, cfg: &SysctlConfig, swappiness: u32) -> VmSettings {
    let ram_kib = ram_kib.max(8 * 1024);
    let min_free = if cfg.min_free_kib != 0 {
        (cfg.min_free_kib as u64).clamp(MIN_FREE_FLOOR_KIB, (ram_kib / 8).max(MIN_FREE_FLOOR_KIB))
    } else {
        (ram_kib / 64).clamp(MIN_FREE_FLOOR_KIB, MIN_FREE_CEIL_KIB)
    };
    let dirty_cap =
        round_down_block(ram_kib / DIRTY_RAM_DIVISOR).max(BATCH_FLOOR_KIB + FLASH_BLOCK_KIB);
    let wanted_batch = if cfg.writeback_batch_kib != 0 {
        cfg.writeback_batch_kib as u64
    } else {
        (ram_kib / 32).clamp(BATCH_FLOOR_KIB, BATCH_CEIL_KIB)
    };
    // The batch leaves room under the cap for writers to keep going while
    // it is written.
    let batch = round_down_block(wanted_batch).clamp(BATCH_FLOOR_KIB, dirty_cap - FLASH_BLOCK_KIB);
    let dirty = (batch * 2).clamp(batch + FLASH_BLOCK_KIB, dirty_cap);
    VmSettings {
        min_free_kbytes: min_free,
        dirty_background_bytes: batch * 1024,
        dirty_bytes: dirty * 1024,
        dirty_expire_centisecs: cfg.dirty_expire_secs as u64 * 100,
        dirty_writeback_centisecs: cfg.dirty_writeback_secs as u64 * 100,
        swappiness: swappiness as u64,
    }
}

/// Reads MemTotal (KiB) from a /proc/meminfo text.
pub fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo_field(meminfo, "MemTotal")
}

/// Reads one `Name:   123 kB` field (KiB) from a /proc/meminfo text.
pub fn meminfo_field(meminfo: &str, name: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let (k, rest) = l.split_once(':')?;
        if k.trim() != name {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The /proc/sys path of a dotted sysctl name.
pub fn proc_path(name: &str) -> std::path::PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

/// Writes every setting; logs each value and each failure. Returns how
/// many were applied.
pub fn apply(sys: &mut dyn Sys, s: &VmSettings) -> usize {
    let mut ok = 0;
    for (name, value) in s.entries() {
        match sys.write_file(&proc_path(name), format!("{value}\n").as_bytes()) {
            Ok(()) => {
                log::info!("sysctl {name} = {value}");
                ok += 1;
            }
            Err(e) => log::warn!("sysctl {name} = {value}: not applied: {e}"),
        }
    }
    ok
}

/// The same settings as a sysctl.d file, for users of another init (the
/// shipped file is checked against this).
#[cfg(test)]
pub fn sysctl_d_text(ram_label: &str, s: &VmSettings) -> String {
    let mut t = format!(
        "# Written by Pocobelle for a board with {ram_label} of RAM; `pocobelle init`\n# computes and applies these itself at boot.\n"
    );
    for (name, value) in s.entries() {
        t.push_str(&format!("{name} = {value}\n"));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    const MIB: u64 = 1024;

    #[test]
    fn sixty_four_mib_board() {
        let s = compute(64 * MIB, &SysctlConfig::default(), 10);
        assert_eq!(s.min_free_kbytes, 1024);
        assert_eq!(s.dirty_background_bytes, 2 * 1024 * 1024);
        assert_eq!(s.dirty_bytes, 4 * 1024 * 1024);
        assert_eq!(s.dirty_expire_centisecs, 3000);
        assert_eq!(s.dirty_writeback_centisecs, 1500);
        assert_eq!(s.swappiness, 10);
    }

    #[test]
    fn on_battery_writes_back_in_fewer_larger_batches() {
        let s = compute(64 * MIB, &SysctlConfig::default(), 10);
        let b = s.on_battery();
        assert_eq!(b.dirty_writeback_centisecs, ON_BATTERY_MAX_WRITEBACK_CS);
        assert_eq!(b.dirty_expire_centisecs, 6000);
        // The byte limits and the rest are not touched.
        assert_eq!(
            (b.dirty_bytes, b.min_free_kbytes, b.swappiness),
            (s.dirty_bytes, s.min_free_kbytes, s.swappiness)
        );
        // Never sooner than on mains, whatever the configuration.
        let slow = VmSettings {
            dirty_writeback_centisecs: 9000,
            ..s
        };
        assert_eq!(slow.on_battery().dirty_writeback_centisecs, 9000);
    }

    #[test]
    fn invariants_hold_for_every_ram_size_and_config() {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..5000 {
            let ram = if i < 40 {
                (8 + i * 8) * MIB
            } else {
                8 * MIB + next() % (4096 * MIB)
            };
            let cfg = SysctlConfig {
                writeback_batch_kib: if next() % 2 == 0 {
                    0
                } else {
                    128 + (next() % 262144) as u32
                },
                min_free_kib: if next() % 2 == 0 {
                    0
                } else {
                    512 + (next() % 262144) as u32
                },
                dirty_expire_secs: 1 + (next() % 600) as u32,
                dirty_writeback_secs: 1 + (next() % 600) as u32,
            };
            let s = compute(ram, &cfg, 10);
            let bg = s.dirty_background_bytes / 1024;
            let hard = s.dirty_bytes / 1024;
            assert!(s.min_free_kbytes >= MIN_FREE_FLOOR_KIB, "{ram} {s:?}");
            assert!(
                bg >= BATCH_FLOOR_KIB && bg.is_multiple_of(FLASH_BLOCK_KIB),
                "{ram} {s:?}"
            );
            assert!(hard > bg, "{ram} {s:?}");
            // A burst cannot starve memory: dirty pages plus the reserve
            // stay within a quarter of RAM.
            assert!(hard + s.min_free_kbytes <= ram / 4, "{ram} {cfg:?} {s:?}");
        }
    }

    #[test]
    fn configured_batch_is_rounded_to_flash_blocks_and_capped() {
        let cfg = SysctlConfig {
            writeback_batch_kib: 1000,
            ..SysctlConfig::default()
        };
        let s = compute(256 * MIB, &cfg, 10);
        assert_eq!(s.dirty_background_bytes, 896 * 1024);
        let cfg = SysctlConfig {
            writeback_batch_kib: 200_000,
            ..SysctlConfig::default()
        };
        let s = compute(64 * MIB, &cfg, 10);
        assert!(s.dirty_bytes <= 8 * 1024 * 1024);
    }

    /// The file shipped for users of another init holds exactly what init
    /// computes for a 64 MiB board with the default configuration.
    #[test]
    fn shipped_sysctl_d_matches_the_computation() {
        let shipped = include_str!("../../../rootfs-overlay/etc/sysctl.d/60-pocobelle.conf");
        let s = compute(64 * MIB, &SysctlConfig::default(), 10);
        assert_eq!(shipped, sysctl_d_text("64 MiB", &s));
    }

    #[test]
    fn meminfo_is_read() {
        let m = "MemTotal:          61284 kB\nMemFree:   1000 kB\nSwapTotal: 16380 kB\n";
        assert_eq!(mem_total_kib(m), Some(61284));
        assert_eq!(meminfo_field(m, "SwapTotal"), Some(16380));
        assert_eq!(meminfo_field(m, "Swap"), None);
        assert_eq!(mem_total_kib("garbage"), None);
    }

    #[test]
    fn apply_writes_proc_sys_and_survives_failures() {
        let mut sys = FakeSys {
            fail: vec!["write /proc/sys/vm/swappiness".into()],
            ..Default::default()
        };
        let s = compute(64 * MIB, &SysctlConfig::default(), 10);
        assert_eq!(apply(&mut sys, &s), 5);
        assert_eq!(sys.calls[0], "write /proc/sys/vm/min_free_kbytes 1024");
        assert!(
            sys.calls
                .contains(&"write /proc/sys/vm/dirty_background_bytes 2097152".to_string())
        );
    }
}
