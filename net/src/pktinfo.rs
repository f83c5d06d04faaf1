//! Answering a datagram from the address it was sent to.
//!
//! A UDP socket bound to the wildcard address sends with whatever source
//! address the route to the client picks, which on a host with several
//! addresses (or a name that resolves to a second loopback address) is not
//! always the address the client wrote to. A client whose socket is
//! connected to the server's address then never sees the reply. With
//! packet information switched on, the kernel tells each received
//! datagram's destination ([`Destination`]), and the reply names it as its
//! source.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::DgramSocket;

/// Where a received datagram was addressed: the source to answer from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    V4(Ipv4Addr),
    /// With the interface it arrived on (needed for link-local addresses).
    V6 {
        addr: Ipv6Addr,
        ifindex: u32,
    },
}

/// Room for one `in6_pktinfo` control message (the larger of the two).
pub(crate) const CONTROL_LEN: usize = 64;

/// Control-message buffer, aligned as `cmsghdr` requires.
#[repr(C, align(8))]
pub(crate) struct ControlBuf(pub [u8; CONTROL_LEN]);

impl DgramSocket {
    /// Asks the kernel to report each datagram's destination address
    /// (`IP_PKTINFO` / `IPV6_RECVPKTINFO`), for an IPv4 or IPv6 socket.
    pub fn enable_packet_info(&self, ipv6: bool) -> io::Result<()> {
        let on: libc::c_int = 1;
        if ipv6 {
            self.setsockopt(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &on)
        } else {
            self.setsockopt(libc::IPPROTO_IP, libc::IP_PKTINFO, &on)
        }
    }
}

/// The destination in a received message's control data, if any.
pub(crate) fn destination_of(hdr: &libc::msghdr) -> Option<Destination> {
    // SAFETY: `hdr` was filled by recvmsg; CMSG_FIRSTHDR/NXTHDR stay within
    // msg_control/msg_controllen, and each payload read is checked against
    // the message's length.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            let len = c.cmsg_len as usize - (data as usize - cmsg as usize);
            if c.cmsg_level == libc::IPPROTO_IP
                && c.cmsg_type == libc::IP_PKTINFO
                && len >= size_of::<libc::in_pktinfo>()
            {
                let info = std::ptr::read_unaligned(data as *const libc::in_pktinfo);
                let addr = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                return Some(Destination::V4(addr));
            }
            if c.cmsg_level == libc::IPPROTO_IPV6
                && c.cmsg_type == libc::IPV6_PKTINFO
                && len >= size_of::<libc::in6_pktinfo>()
            {
                let info = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                return Some(Destination::V6 {
                    addr: Ipv6Addr::from(info.ipi6_addr.s6_addr),
                    ifindex: info.ipi6_ifindex,
                });
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// Points `hdr`'s control data at `buf`, holding one message that sends
/// from `from`.
pub(crate) fn write_source(hdr: &mut libc::msghdr, buf: &mut ControlBuf, from: &Destination) {
    let (level, kind, payload_len) = match from {
        Destination::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        Destination::V6 { .. } => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: CMSG_SPACE of either payload fits CONTROL_LEN; the header
    // and payload are written inside `buf`, which `hdr` points at.
    unsafe {
        let space = libc::CMSG_SPACE(payload_len as u32) as usize;
        debug_assert!(space <= CONTROL_LEN);
        hdr.msg_control = buf.0.as_mut_ptr() as *mut libc::c_void;
        hdr.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = level;
        (*cmsg).cmsg_type = kind;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload_len as u32) as _;
        let data = libc::CMSG_DATA(cmsg);
        match *from {
            Destination::V4(addr) => {
                let mut info: libc::in_pktinfo = std::mem::zeroed();
                info.ipi_spec_dst.s_addr = u32::from(addr).to_be();
                std::ptr::write_unaligned(data as *mut libc::in_pktinfo, info);
            }
            Destination::V6 { addr, ifindex } => {
                let mut info: libc::in6_pktinfo = std::mem::zeroed();
                info.ipi6_addr.s6_addr = addr.octets();
                info.ipi6_ifindex = ifindex;
                std::ptr::write_unaligned(data as *mut libc::in6_pktinfo, info);
            }
        }
    }
}
