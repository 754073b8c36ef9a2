//! The safe flasher behind `pocobelle flash IMAGE DEVICE` (a host tool):
//! which devices it refuses and why, the bmap file format, and the copy
//! that writes only an image's mapped blocks and reads them back.
//!
//! - [`bmap`] parses and validates a bmap file (sans-I/O).
//! - [`device`] gathers the facts about a target (sysfs, mounts, swaps)
//!   and decides, in the pure [`device::check`], whether it may be written.
//! - [`copy`] checks the image against the bmap, writes the mapped ranges,
//!   flushes the device and verifies what it reads back.
//!
//! The applet (`applet/flash.rs`) only parses the command line and runs
//! these steps in order. Nothing here writes to a device that a check has
//! not cleared.
//!
//! Every refusal has its own exit status:
//!
//! | status | constant               | meaning                                          |
//! |-------:|------------------------|--------------------------------------------------|
//! |      0 |                        | written, read back and verified                  |
//! |      1 | [`EXIT_FAILED`]        | an I/O error (image unreadable, write failed...) |
//! |     10 | [`EXIT_NOT_BLOCK`]     | the target is not a block device                 |
//! |     11 | [`EXIT_PARTITION`]     | the target is a partition, not a whole disk      |
//! |     12 | [`EXIT_MOUNTED`]       | it or a partition is mounted, swap, or held      |
//! |     13 | [`EXIT_BUSY`]          | another program has it open (O_EXCL: EBUSY)      |
//! |     14 | [`EXIT_SYSTEM_DISK`]   | it holds the running system (`/`)                |
//! |     15 | [`EXIT_NON_REMOVABLE`] | not removable, and not forced                    |
//! |     16 | [`EXIT_TOO_SMALL`]     | smaller than the image (or size unknown)         |
//! |     17 | [`EXIT_BAD_BMAP`]      | bmap missing, malformed or its checksum is wrong |
//! |     18 | [`EXIT_IMAGE_MISMATCH`]| the image's size differs from the bmap's         |
//! |     19 | [`EXIT_CORRUPT_IMAGE`] | a mapped range of the image fails its checksum   |
//! |     20 | [`EXIT_VERIFY_FAILED`] | what the device reads back differs (bad medium)  |
//! |     21 | [`EXIT_NOT_CONFIRMED`] | no `--yes` and the user did not type `yes`       |
//! |     64 | `applet::EXIT_USAGE`   | the command line does not parse                  |

pub mod bmap;
pub mod copy;
pub mod device;

/// An I/O error: the image could not be read, the device not written.
pub const EXIT_FAILED: u8 = 1;
/// The target is not a block device.
pub const EXIT_NOT_BLOCK: u8 = 10;
/// The target is a partition, not a whole disk.
pub const EXIT_PARTITION: u8 = 11;
/// The target or one of its partitions is mounted, used as swap, or held
/// by another block device (device mapper, RAID).
pub const EXIT_MOUNTED: u8 = 12;
/// Another program has the target open (exclusive open failed: EBUSY).
pub const EXIT_BUSY: u8 = 13;
/// The target holds the running system's root file system.
pub const EXIT_SYSTEM_DISK: u8 = 14;
/// The target is not removable and `--force-non-removable` did not name it.
pub const EXIT_NON_REMOVABLE: u8 = 15;
/// The target is smaller than the image, or its size cannot be read.
pub const EXIT_TOO_SMALL: u8 = 16;
/// The bmap file is missing, unreadable, malformed or fails its checksum.
pub const EXIT_BAD_BMAP: u8 = 17;
/// The image's size is not the bmap's ImageSize.
pub const EXIT_IMAGE_MISMATCH: u8 = 18;
/// A mapped range of the image does not match its bmap checksum.
pub const EXIT_CORRUPT_IMAGE: u8 = 19;
/// A range read back from the device differs from the image.
pub const EXIT_VERIFY_FAILED: u8 = 20;
/// The write was not confirmed (`--yes`, or `yes` typed on a terminal).
pub const EXIT_NOT_CONFIRMED: u8 = 21;
