//! `pocobelle init`, the board's PID 1: boot (mounts, modules, data
//! partition with fsck, clock, swap, sysctls), supervision of the services
//! and the shutdown sequence. Pure decisions live in their own modules
//! (`sysctl`, `swap`, `restart`, `order`, `clock`, `modules`' dependency
//! walk) and are unit-tested; side effects go through `crate::sys`. The
//! loop itself is `pid1`. Nothing in here may exit the process or panic
//! when running as PID 1.

pub mod clock;
pub mod control;
pub mod grow;
pub mod logfile;
pub mod logring;
pub mod modules;
pub mod mount;
pub mod net;
pub mod netlink;
pub mod nut;
pub mod order;
pub mod pid1;
pub mod power;
pub mod restart;
pub mod sntp;
pub mod storage;
pub mod supervisor;
pub mod swap;
pub mod sysctl;
pub mod users;
pub mod watchdog;
