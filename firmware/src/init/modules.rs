//! Loading the board's kernel modules with finit_module(2), each after its
//! dependencies as listed in `/lib/modules/<release>/modules.dep` (the
//! file depmod writes). [`DepMap::parse`] is the bounded parser; [`load`]
//! walks the dependencies depth first. A module already loaded (EEXIST) or
//! built in (`modules.builtin`) is fine. This module never unloads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::sys::Sys;

/// A modules.dep larger than this is refused (Debian's armmp one is ~400 KiB).
pub const MAX_DEP_BYTES: usize = 4 * 1024 * 1024;
/// Dependency chains deeper than this are refused (real ones are < 10).
pub const MAX_DEPTH: usize = 32;
/// At most this many dependencies on one line.
pub const MAX_DEPS_PER_MODULE: usize = 64;

/// Errors in reading the module list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepError {
    /// modules.dep is larger than [`MAX_DEP_BYTES`].
    #[error("modules.dep is {0} bytes, more than {MAX_DEP_BYTES}")]
    TooLarge(usize),
    /// A line is not `path: dep dep ...`.
    #[error("modules.dep line {0}: expected `path: dependencies`")]
    BadLine(usize),
    /// A line lists more than [`MAX_DEPS_PER_MODULE`] dependencies.
    #[error("modules.dep line {0}: more than {MAX_DEPS_PER_MODULE} dependencies")]
    TooManyDeps(usize),
}

/// Errors in loading one named module.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Neither modules.dep nor modules.builtin knows the name.
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
    /// The dependency chain is deeper than [`MAX_DEPTH`] (or circular).
    #[error("module {0}: dependency chain deeper than {MAX_DEPTH}")]
    TooDeep(String),
    /// finit_module failed.
    #[error("module {path}: {source}")]
    Load {
        path: String,
        source: std::io::Error,
    },
}

/// Module name (`virtio_blk`) from a path (`kernel/.../virtio_blk.ko.xz`),
/// with `-` folded to `_` as the kernel does.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// modules.dep, keyed by module name.
#[derive(Debug, Default)]
pub struct DepMap {
    entries: BTreeMap<String, (String, Vec<String>)>,
}

impl DepMap {
    pub fn parse(text: &str) -> Result<DepMap, DepError> {
        if text.len() > MAX_DEP_BYTES {
            return Err(DepError::TooLarge(text.len()));
        }
        let mut entries = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) = line.split_once(':').ok_or(DepError::BadLine(i + 1))?;
            let path = path.trim();
            if path.is_empty() || path.contains(char::is_whitespace) {
                return Err(DepError::BadLine(i + 1));
            }
            let deps: Vec<String> = deps.split_whitespace().map(str::to_string).collect();
            if deps.len() > MAX_DEPS_PER_MODULE {
                return Err(DepError::TooManyDeps(i + 1));
            }
            entries.insert(module_name(path), (path.to_string(), deps));
        }
        Ok(DepMap { entries })
    }

    /// The module files to load for `name`, dependencies first, each once.
    pub fn load_order(&self, name: &str) -> Result<Vec<String>, LoadError> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        self.visit(&name.replace('-', "_"), 0, &mut seen, &mut order)?;
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        depth: usize,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), LoadError> {
        if depth > MAX_DEPTH {
            return Err(LoadError::TooDeep(name.to_string()));
        }
        if seen.contains(name) {
            return Ok(());
        }
        let (path, deps) = self
            .entries
            .get(name)
            .ok_or_else(|| LoadError::Unknown(name.to_string()))?;
        for d in deps.iter().rev() {
            self.visit(&module_name(d), depth + 1, seen, order)?;
        }
        if seen.insert(name.to_string()) {
            order.push(path.clone());
        }
        Ok(())
    }
}

/// Loads `names` (with dependencies) from `dir` (/lib/modules/<release>);
/// logs each outcome and returns how many named modules failed.
pub fn load(sys: &mut dyn Sys, dir: &Path, names: &[String]) -> usize {
    if names.is_empty() {
        return 0;
    }
    let deps = match sys
        .read_to_string(&dir.join("modules.dep"))
        .map_err(|e| e.to_string())
        .and_then(|t| DepMap::parse(&t).map_err(|e| e.to_string()))
    {
        Ok(d) => d,
        Err(e) => {
            log::error!(
                "modules: {}/modules.dep: {e}; no module loaded",
                dir.display()
            );
            return names.len();
        }
    };
    let builtin: BTreeSet<String> = sys
        .read_to_string(&dir.join("modules.builtin"))
        .map(|t| t.lines().map(module_name).collect())
        .unwrap_or_default();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut failed = 0;
    for name in names {
        let order = match deps.load_order(name) {
            Ok(o) => o,
            Err(LoadError::Unknown(_)) if builtin.contains(&name.replace('-', "_")) => {
                log::info!("modules: {name} is built into the kernel");
                continue;
            }
            Err(e) => {
                log::error!("modules: {e}");
                failed += 1;
                continue;
            }
        };
        let mut ok = true;
        for rel in order {
            if !done.insert(rel.clone()) {
                continue;
            }
            let path: PathBuf = if rel.starts_with('/') {
                PathBuf::from(&rel)
            } else {
                dir.join(&rel)
            };
            match sys.load_module(&path, "") {
                Ok(()) => log::info!("modules: loaded {}", module_name(&rel)),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    log::debug!("modules: {} already loaded", module_name(&rel))
                }
                Err(source) => {
                    log::error!(
                        "{}",
                        LoadError::Load {
                            path: path.display().to_string(),
                            source
                        }
                    );
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            failed += 1;
        }
    }
    failed
}

/// `/lib/modules/<uname -r>`.
pub fn release_dir() -> PathBuf {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fake::FakeSys;

    const DEP: &str = "kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\n\
kernel/fs/mbcache.ko:\n\
kernel/fs/jbd2/jbd2.ko:\n\
kernel/lib/crc16.ko:\n\
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/virtio/virtio.ko:\n";

    #[test]
    fn dependencies_load_first_and_once() {
        let d = DepMap::parse(DEP).unwrap();
        assert_eq!(
            d.load_order("virtio-blk").unwrap(),
            [
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/block/virtio_blk.ko"
            ]
        );
        let mut sys = FakeSys::default();
        let dir = Path::new("/lib/modules/6.1");
        sys.files.insert(dir.join("modules.dep"), DEP.into());
        sys.files
            .insert(dir.join("modules.builtin"), "kernel/fs/unix.ko\n".into());
        sys.already_loaded.push(dir.join("kernel/lib/crc16.ko"));
        let names: Vec<String> = ["virtio_mmio", "virtio_blk", "ext4", "unix", "nope"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(load(&mut sys, dir, &names), 1);
        let loaded: Vec<String> = sys.calls.iter().map(|c| module_name(c)).collect();
        assert_eq!(
            loaded,
            [
                "virtio",
                "virtio_ring",
                "virtio_mmio",
                "virtio_blk",
                "crc16",
                "jbd2",
                "mbcache",
                "ext4"
            ]
        );
    }

    #[test]
    fn cycles_and_bad_lines_are_errors() {
        let d = DepMap::parse("a.ko: b.ko\nb.ko: a.ko\n").unwrap();
        // A cycle terminates (depth bound) with an error, never a hang.
        assert!(matches!(d.load_order("a"), Err(LoadError::TooDeep(_))));
        assert_eq!(
            DepMap::parse("no colon here\n").unwrap_err(),
            DepError::BadLine(1)
        );
    }

    #[test]
    fn parser_fuzz_never_panics() {
        let mut x: u64 = 0xdeadbeefcafe;
        let alphabet = b"ab.ko:/ \n-_#";
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(x % 80) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
            }
            if let Ok(d) = DepMap::parse(&s) {
                let _ = d.load_order("a");
                let _ = d.load_order("b");
            }
        }
    }
}
