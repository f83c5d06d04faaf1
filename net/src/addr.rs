//! Socket addresses of every family used here, and the IP hosts users
//! name.

use crate::TipcAddr;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};

/// A socket address of any family, as the kernel sees it.
#[derive(Clone, Copy)]
pub struct SockAddr {
    pub(crate) storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl SockAddr {
    /// An empty address for the kernel to fill.
    pub(crate) fn empty() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all zeroes is valid.
        SockAddr {
            storage: unsafe { MaybeUninit::zeroed().assume_init() },
            len: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// Copies a concrete `sockaddr_*` structure.
    pub(crate) fn from_raw<T: Copy>(addr: &T) -> Self {
        assert!(size_of::<T>() <= size_of::<libc::sockaddr_storage>());
        let mut out = Self::empty();
        // SAFETY: T fits in the storage (checked above); both are plain data.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr as *const T as *const u8,
                &mut out.storage as *mut _ as *mut u8,
                size_of::<T>(),
            );
        }
        out.len = size_of::<T>() as libc::socklen_t;
        out
    }

    pub fn family(&self) -> libc::c_int {
        libc::c_int::from(self.storage.ss_family)
    }

    /// Reads the address as a concrete structure, if it is at least that long.
    pub(crate) fn as_raw<T: Copy>(&self) -> Option<T> {
        if (self.len as usize) < size_of::<T>() {
            return None;
        }
        // SAFETY: the storage holds at least size_of::<T>() initialised bytes.
        Some(unsafe { std::ptr::read_unaligned(&self.storage as *const _ as *const T) })
    }

    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        &self.storage as *const _ as *const libc::sockaddr
    }

    /// The IP address and port, for `AF_INET`/`AF_INET6`.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self.family() {
            libc::AF_INET => {
                let a: libc::sockaddr_in = self.as_raw()?;
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a: libc::sockaddr_in6 = self.as_raw()?;
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

impl From<SocketAddr> for SockAddr {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => {
                // SAFETY: plain old data.
                let mut raw: libc::sockaddr_in = unsafe { MaybeUninit::zeroed().assume_init() };
                raw.sin_family = libc::AF_INET as libc::sa_family_t;
                raw.sin_port = a.port().to_be();
                raw.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                SockAddr::from_raw(&raw)
            }
            SocketAddr::V6(a) => {
                // SAFETY: plain old data.
                let mut raw: libc::sockaddr_in6 = unsafe { MaybeUninit::zeroed().assume_init() };
                raw.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                raw.sin6_port = a.port().to_be();
                raw.sin6_addr.s6_addr = a.ip().octets();
                raw.sin6_flowinfo = a.flowinfo();
                raw.sin6_scope_id = a.scope_id();
                SockAddr::from_raw(&raw)
            }
        }
    }
}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(a) = self.as_inet() {
            return write!(f, "{a}");
        }
        if let Some(a) = TipcAddr::from_sockaddr(self) {
            return write!(f, "{a:?}");
        }
        write!(f, "<address family {}>", self.family())
    }
}

impl PartialEq for SockAddr {
    fn eq(&self, other: &Self) -> bool {
        let bytes = |a: &SockAddr| {
            // SAFETY: reading `len` initialised bytes of the storage.
            unsafe { std::slice::from_raw_parts(a.as_ptr() as *const u8, a.len as usize) }.to_vec()
        };
        self.len == other.len && bytes(self) == bytes(other)
    }
}

impl Eq for SockAddr {}

/// The socket family (`AF_INET`, `AF_INET6`) for an IP address.
pub fn inet_family(addr: &SocketAddr) -> libc::c_int {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

/// Where a socket bound to `addr` is reached from this host: the address
/// itself, or loopback for a wildcard address.
pub fn reachable_from_here(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        // As it is, with an IPv6 address's scope (a link-local one's).
        _ => addr,
    }
}

/// The address of a host named by a user, for server and library alike:
/// an IPv4 address, an IPv6 address (bare or in brackets), or a name, of
/// which the first IPv4 address is taken (what the original, IPv4 only,
/// would have used), else its first address.
pub fn resolve_host(host: &str) -> io::Result<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Some(ip) = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<Ipv6Addr>().ok())
    {
        return Ok(IpAddr::V6(ip));
    }
    if host.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the host name is empty",
        ));
    }
    let addrs: Vec<SocketAddr> = (host, 0).to_socket_addrs()?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .map(SocketAddr::ip)
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_addresses_round_trip() {
        for a in ["127.0.0.1:26010", "[::1]:9"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(SockAddr::from(a).as_inet(), Some(a));
        }
    }

    #[test]
    fn hosts_resolve_to_literals_in_either_spelling_and_names_to_ipv4_first() {
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(resolve_host("::1").unwrap(), v6);
        assert_eq!(resolve_host("[::1]").unwrap(), v6);
        assert_eq!(
            resolve_host("10.1.2.3").unwrap(),
            IpAddr::from([10, 1, 2, 3])
        );
        assert_eq!(
            resolve_host("localhost").unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert!(resolve_host("").is_err());
    }

    #[test]
    fn a_socket_on_a_wildcard_address_is_reached_through_loopback() {
        let cases = [
            ("0.0.0.0:9", "127.0.0.1:9"),
            ("[::]:9", "[::1]:9"),
            ("10.1.2.3:9", "10.1.2.3:9"),
            ("[fe80::1%2]:9", "[fe80::1%2]:9"),
        ];
        for (bound, woken) in cases {
            let bound: SocketAddr = bound.parse().unwrap();
            assert_eq!(reachable_from_here(bound), woken.parse().unwrap());
        }
    }
}
