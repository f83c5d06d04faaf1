//! Socket options, and system-call results made `io::Result`s.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

/// The listen backlog for servers: at least 1024, more when the system
/// allows it (`net.core.somaxconn`), so that a burst of connections is not
/// turned away by the kernel before they are accepted.
pub fn listen_backlog() -> libc::c_int {
    let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_int>().ok())
        .unwrap_or(0);
    somaxconn.max(1024)
}

/// Gives socket `fd` a kernel send buffer of `bytes` (what the kernel may
/// hold of data written and not yet taken by the peer), which also stops
/// the kernel growing it by itself. Returns the size the kernel applied.
///
/// Linux doubles the `SO_SNDBUF` value it is given (half of the room is
/// its own bookkeeping) and caps it at `net.core.wmem_max` unless the
/// process may force it (`CAP_NET_ADMIN`), so the size is asked as half,
/// forced when allowed, and read back.
pub fn set_send_buffer(fd: RawFd, bytes: usize) -> io::Result<usize> {
    let half = libc::c_int::try_from(bytes / 2)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "send buffer too large"))?;
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &half).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &half)?;
    }
    let mut applied: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the pointer and length describe `applied`.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &mut applied as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok(applied.max(0) as usize)
}

/// `setsockopt` on `fd` with a plain-data value.
pub(crate) fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: the pointer and size describe `value`; the kernel only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// A system call's result, its error named after `what` (the call, or
/// what it worked on) so that a log line says which call failed.
pub fn os_result(ret: libc::c_int, what: &str) -> io::Result<libc::c_int> {
    cvt(ret).map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
}

pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(crate) fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_send_buffer_is_applied_whole_and_read_back() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            set_send_buffer(s.as_raw_fd(), 256 << 10).unwrap(),
            256 << 10
        );
        assert_eq!(set_send_buffer(s.as_raw_fd(), 64 << 10).unwrap(), 64 << 10);
        let too_large = set_send_buffer(s.as_raw_fd(), usize::MAX).unwrap_err();
        assert_eq!(too_large.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            set_send_buffer(-1, 64 << 10).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
