//! Batched UDP I/O for the DNS server: after one readiness wakeup, up to
//! [`UDP_BATCH`] datagrams are taken with one `recvmmsg` and their
//! replies sent with one `sendmmsg`, into and from buffers that live as
//! long as the socket's serving task (no allocation per datagram). This
//! module owns the raw `mmsghdr` plumbing and nothing else: what is
//! answered is decided by the caller.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams read per `recvmmsg` and answered per `sendmmsg`.
pub const UDP_BATCH: usize = 16;

/// Room for one received datagram; one byte over the largest query we
/// accept, so that a longer one is seen as too long (and its truncation
/// flag is checked too).
pub const RX_SLOT_BYTES: usize = super::wire::MAX_QUERY_BYTES + 1;

/// One batch: the received datagrams, their senders, and the replies.
pub struct Batch {
    rx: Box<[u8]>,
    rx_len: [usize; UDP_BATCH],
    truncated: [bool; UDP_BATCH],
    addr: [libc::sockaddr_storage; UDP_BATCH],
    addr_len: [libc::socklen_t; UDP_BATCH],
    /// Received datagrams in this batch.
    pub count: usize,
    /// The reply to datagram `i` (empty: none).
    pub replies: Vec<Vec<u8>>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            rx: vec![0u8; RX_SLOT_BYTES * UDP_BATCH].into_boxed_slice(),
            rx_len: [0; UDP_BATCH],
            truncated: [false; UDP_BATCH],
            // SAFETY: sockaddr_storage is plain old data; all zeros is a
            // valid (AF_UNSPEC) value.
            addr: unsafe { zeroed() },
            addr_len: [0; UDP_BATCH],
            count: 0,
            replies: (0..UDP_BATCH).map(|_| Vec::new()).collect(),
        }
    }

    /// Datagram `i` of the batch, or `None` when it was longer than
    /// [`RX_SLOT_BYTES`] allows (cut by the kernel).
    pub fn datagram(&self, i: usize) -> Option<&[u8]> {
        if self.truncated[i] {
            return None;
        }
        let at = i * RX_SLOT_BYTES;
        Some(&self.rx[at..at + self.rx_len[i].min(RX_SLOT_BYTES)])
    }

    /// The sender of datagram `i` (`None` for an unknown address family).
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        sockaddr_to_std(&self.addr[i], self.addr_len[i])
    }

    /// Receives up to [`UDP_BATCH`] datagrams without blocking. Returns
    /// how many (also in `count`); `WouldBlock` when there were none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain old data.
        let mut iov: [libc::iovec; UDP_BATCH] = unsafe { zeroed() };
        let mut hdr: [libc::mmsghdr; UDP_BATCH] = unsafe { zeroed() };
        let base = self.rx.as_mut_ptr();
        for i in 0..UDP_BATCH {
            // SAFETY: slot i lies within `rx` (UDP_BATCH slots).
            iov[i].iov_base = unsafe { base.add(i * RX_SLOT_BYTES) }.cast();
            iov[i].iov_len = RX_SLOT_BYTES;
            hdr[i].msg_hdr.msg_iov = &mut iov[i];
            hdr[i].msg_hdr.msg_iovlen = 1;
            hdr[i].msg_hdr.msg_name = (&mut self.addr[i] as *mut libc::sockaddr_storage).cast();
            hdr[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        }
        // SAFETY: every header points at live buffers of the stated sizes
        // (`iov`, `hdr` on this stack frame; `rx`, `addr` in self) for the
        // duration of the call; MSG_DONTWAIT makes it non-blocking.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdr.as_mut_ptr(),
                UDP_BATCH as _,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdr.iter().enumerate().take(n) {
            self.rx_len[i] = h.msg_len as usize;
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.addr_len[i] = h.msg_hdr.msg_namelen;
        }
        self.count = n;
        Ok(n)
    }

    /// Sends the non-empty replies of the batch, from index `from` on,
    /// without blocking. Returns the index of the first reply not yet
    /// handed to the kernel (`count` when all were): the caller waits
    /// for the socket to be writable and calls again on `WouldBlock`.
    /// A reply the kernel refuses for another reason is skipped.
    pub fn send(&mut self, fd: RawFd, from: usize) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain old data.
        let mut iov: [libc::iovec; UDP_BATCH] = unsafe { zeroed() };
        let mut hdr: [libc::mmsghdr; UDP_BATCH] = unsafe { zeroed() };
        let mut which = [0usize; UDP_BATCH];
        let mut m = 0;
        for i in from..self.count {
            let r = &mut self.replies[i];
            if r.is_empty() {
                continue;
            }
            iov[m].iov_base = r.as_mut_ptr().cast();
            iov[m].iov_len = r.len();
            hdr[m].msg_hdr.msg_iov = &mut iov[m];
            hdr[m].msg_hdr.msg_iovlen = 1;
            hdr[m].msg_hdr.msg_name = (&mut self.addr[i] as *mut libc::sockaddr_storage).cast();
            hdr[m].msg_hdr.msg_namelen = self.addr_len[i];
            which[m] = i;
            m += 1;
        }
        if m == 0 {
            return Ok(self.count);
        }
        // SAFETY: as in `recv`: every header points at live buffers for
        // the duration of the call.
        let n = unsafe { libc::sendmmsg(fd, hdr.as_mut_ptr(), m as _, libc::MSG_DONTWAIT as _) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Err(e);
            }
            // The first reply failed (e.g. unreachable peer): drop it.
            log::debug!("udp send: {e}");
            return Ok(which[0] + 1);
        }
        let n = n as usize;
        Ok(if n >= m { self.count } else { which[n] })
    }
}

/// A kernel socket address as a std one.
fn sockaddr_to_std(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match s.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says this storage holds a sockaddr_in,
            // and sockaddr_storage is large and aligned enough for it.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_is_received_and_answered_in_order() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = server.local_addr().unwrap();
        let mut b = Batch::new();
        assert_eq!(
            b.recv(server.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        for i in 0..UDP_BATCH + 3 {
            client.send_to(&[i as u8; 20], to).unwrap();
        }
        client.send_to(&vec![7u8; RX_SLOT_BYTES + 10], to).unwrap();
        let n = b.recv(server.as_raw_fd()).unwrap();
        assert_eq!(n, UDP_BATCH);
        for i in 0..n {
            assert_eq!(b.datagram(i).unwrap(), &[i as u8; 20][..]);
            assert_eq!(b.peer(i), Some(client.local_addr().unwrap()));
            // Every other datagram gets no reply.
            b.replies[i].clear();
            if i % 2 == 0 {
                b.replies[i].extend_from_slice(&[i as u8, 0xAB]);
            }
        }
        assert_eq!(b.send(server.as_raw_fd(), 0).unwrap(), n);
        let mut buf = [0u8; 16];
        for i in (0..n).step_by(2) {
            let (len, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], &[i as u8, 0xAB]);
        }
        // The rest, then the oversized one, which is flagged.
        let n = b.recv(server.as_raw_fd()).unwrap();
        assert_eq!(n, 4);
        assert_eq!(b.datagram(2).unwrap(), &[(UDP_BATCH + 2) as u8; 20][..]);
        assert_eq!(b.datagram(3), None);
    }
}
