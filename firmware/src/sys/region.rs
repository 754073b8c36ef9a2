//! A block of zeroed memory that becomes resident only where it is
//! written: an anonymous private mapping. The DNS cache asks for its whole
//! byte bound up front and pays, in resident memory, only for the part it
//! has filled. (A heap allocation of the same size would also start as
//! untouched zero pages most of the time, but glibc may serve it from
//! freed heap memory and clear it, making every page resident at once.)

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Zeroed bytes, mapped when possible, on the heap otherwise.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    mapped: bool,
}

// SAFETY: the region owns its memory exclusively, like a Box<[u8]>.
unsafe impl Send for Region {}
// SAFETY: shared access only reads, like &[u8].
unsafe impl Sync for Region {}

impl Region {
    /// `len` zeroed bytes. An anonymous mapping when the kernel grants
    /// one; otherwise (say, an address-space limit) a heap allocation.
    pub fn zeroed(len: usize) -> Region {
        if len > 0 {
            // SAFETY: a fresh anonymous private mapping, no file, no fixed
            // address; the result is checked before use.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED
                && let Some(ptr) = NonNull::new(p.cast::<u8>())
            {
                return Region {
                    ptr,
                    len,
                    mapped: true,
                };
            }
        }
        let boxed: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        let len = boxed.len();
        let ptr = NonNull::new(Box::into_raw(boxed).cast::<u8>()).unwrap_or(NonNull::dangling());
        Region {
            ptr,
            len,
            mapped: false,
        }
    }

    /// Whether the bytes are an anonymous mapping (not the heap).
    #[cfg(test)]
    pub fn is_mapped(&self) -> bool {
        self.mapped
    }
}

impl Deref for Region {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to len initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Region {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.mapped {
            // SAFETY: the mapping made in `zeroed`, unmapped once.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        } else if self.len > 0 {
            // SAFETY: the pointer came from Box::into_raw of a boxed slice
            // of exactly len bytes.
            drop(unsafe {
                Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    self.ptr.as_ptr(),
                    self.len,
                ))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_writable_and_lazily_resident() {
        let mut r = Region::zeroed(1 << 20);
        assert!(r.is_mapped());
        assert_eq!(r.len(), 1 << 20);
        assert!(r.iter().step_by(4096).all(|&b| b == 0));
        r[12345] = 7;
        assert_eq!(r[12345], 7);
        let empty = Region::zeroed(0);
        assert!(empty.is_empty());
    }
}
