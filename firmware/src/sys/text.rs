//! Gives back the pages of the program's own code that only start-up used.
//!
//! Every service runs the same multi-call binary, and starting one runs
//! code the service never needs again: argument parsing, the whole
//! configuration reader (every section's, the mail policy's included) and
//! its checks. Each page of it that was touched stays mapped, with the
//! kernel's fault-around mapping up to 64 KiB around each touch, and
//! counts in the service's resident memory for the rest of its life. A
//! service calls [`release_startup_text`] once started, before its working
//! set grows (the DNS cache before it loads its snapshot): the mappings of
//! the executable's code segment are dropped from this process
//! (`MADV_DONTNEED`), and the code the service goes on running is faulted
//! back in from the page cache, shared with the other processes, as it is
//! used. The file's pages stay in the page cache for the kernel to keep or
//! reclaim. Code is never written, so its private mapping holds nothing of
//! its own and dropping it loses nothing; data segments, the read-only
//! RELRO one included (relocated in place), are left alone.

use std::path::Path;

/// At most this many bytes of /proc/self/maps are read (the binary's
/// mappings come first; a service has a few dozen lines).
pub const MAX_MAPS_BYTES: usize = 64 * 1024;

/// The code mappings (start, length) of `exe` in a /proc/self/maps text:
/// read and execute only. Not its read-only data: the RELRO segment
/// (`.got`, `.data.rel.ro`) is mapped read-only too once the loader has
/// relocated it, and those pages are private copies that a drop would
/// turn back into the file's unrelocated bytes.
pub fn code_mappings(maps: &str, exe: &Path) -> Vec<(usize, usize)> {
    let exe = exe.to_string_lossy();
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3)?;
            if path != exe || perms != "r-xp" {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let a = usize::from_str_radix(a, 16).ok()?;
            let b = usize::from_str_radix(b, 16).ok()?;
            (b > a).then_some((a, b - a))
        })
        .collect()
}

/// Drops this process's mappings of its executable's code pages;
/// returns how many bytes were given back (0 when /proc is not there).
/// Never fails the caller: a refused call is logged at debug level.
pub fn release_startup_text() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let maps = match std::fs::File::open("/proc/self/maps") {
        Ok(f) => {
            use std::io::Read;
            let mut s = String::new();
            let _ = f.take(MAX_MAPS_BYTES as u64).read_to_string(&mut s);
            s
        }
        Err(_) => return 0,
    };
    let mut released = 0;
    for (start, len) in code_mappings(&maps, &exe) {
        // SAFETY: the range is a read-and-execute private mapping of our
        // own executable, taken from the kernel's list; code is never
        // written (no text relocations), so its pages are the file's and
        // MADV_DONTNEED only drops page-table entries: the next access
        // faults the same bytes back in.
        let r = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if r == 0 {
            released += len;
        } else {
            log::debug!(
                "madvise(DONTNEED) of {start:#x}+{len:#x}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_code_mappings() {
        let maps = "\
00400000-00500000 r--p 00000000 fe:01 12 /bin/pocobelle
00500000-00800000 r-xp 00100000 fe:01 12 /bin/pocobelle
00800000-00810000 rw-p 00400000 fe:01 12 /bin/pocobelle
00810000-00820000 rw-p 00000000 00:00 0 [heap]
b6f00000-b6f10000 r-xp 00000000 fe:01 40 /lib/ld-linux.so.3
";
        let got = code_mappings(maps, Path::new("/bin/pocobelle"));
        assert_eq!(got, vec![(0x500000, 0x300000)]);
        assert!(code_mappings(maps, Path::new("/bin/other")).is_empty());
    }

    #[test]
    fn released_code_runs_again() {
        // The test binary drops its own code and data pages, then keeps
        // running (and computing) from the pages faulted back in.
        let released = release_startup_text();
        assert!(released > 0, "the test binary has read-only mappings");
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 500_500);
        assert_eq!(format!("{}", 42), "42");
    }
}
