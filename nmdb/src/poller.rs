//! A thin, safe wrapper over the Linux primitives an event loop waits on:
//! an epoll instance, an eventfd other threads write to wake it, and a
//! periodic timerfd for the loop's coarse timers.
//!
//! Sockets are registered edge-triggered for reading and writing at once:
//! the loop reads each until it would block, and hears again only when
//! something new arrives or a full send buffer drains.

use nmdb_net::os_result;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What one wait reported for one registered descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub token: u64,
    /// Readable, or hung up or failed (a read then tells which).
    pub readable: bool,
    /// Its send buffer has room again.
    pub writable: bool,
}

/// An epoll instance.
pub struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

/// Most events taken by one wait.
const EVENTS_PER_WAIT: usize = 256;

impl Poller {
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the descriptor it
        // returns is owned from here on.
        let fd = os_result(
            unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
            "epoll_create1",
        )?;
        Ok(Poller {
            // SAFETY: `fd` was just created and nothing else owns it.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT],
        })
    }

    fn control(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: `event` lives across the call; the kernel copies it.
        let ret = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) };
        os_result(ret, "epoll_ctl").map(drop)
    }

    /// Watches a socket for input and for room to write, edge-triggered.
    pub fn add_socket(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        self.control(libc::EPOLL_CTL_ADD, fd, events as u32, token)
    }

    /// Watches a descriptor for input, level-triggered (the loop's own
    /// eventfd and timerfd, drained when reported).
    fn add_readable(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, token)
    }

    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Returns what is ready; with `block`, first waits until something
    /// is (for as long as it takes: every timeout the loop needs comes
    /// from its timerfd, so no wait arms a kernel timer of its own).
    pub fn wait(&mut self, block: bool) -> io::Result<impl Iterator<Item = Event> + '_> {
        let n = loop {
            // SAFETY: `events` is valid for its whole length.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    self.events.len() as libc::c_int,
                    if block { -1 } else { 0 },
                )
            };
            match os_result(n, "epoll_wait") {
                Ok(n) => break n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let hung_up = (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32;
        Ok(self.events[..n].iter().map(move |e| Event {
            token: e.u64,
            readable: e.events & hung_up != 0,
            writable: e.events & (libc::EPOLLOUT | libc::EPOLLERR) as u32 != 0,
        }))
    }
}

/// Wakes a loop blocked in [`Poller::wait`] from any thread. Wakes that
/// come before the loop has looked cost one system call between them.
pub struct Wake {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Wake {
    /// An eventfd registered with `poller` under `token`.
    pub fn new(poller: &Poller, token: u64) -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; its descriptor is owned here.
        let fd = os_result(
            unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) },
            "eventfd",
        )?;
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        poller.add_readable(fd.as_raw_fd(), token)?;
        Ok(Wake {
            fd,
            pending: AtomicBool::new(false),
        })
    }

    pub fn wake(&self) {
        if self.pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one`, which lives across the call.
        // It cannot fail but by overflowing the counter, which the loop
        // keeps reading to zero.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Called by the loop when its wait reported the eventfd, before it
    /// looks at what it was woken for: a wake after this is not lost.
    ///
    /// The eventfd is drained first and the flag cleared after: the other
    /// way round, a wake landing between the two would find the flag
    /// still set and write nothing, while the drain took the write of the
    /// wake before it, and the loop would sleep on mail left for it.
    pub fn reset(&self) {
        take_count(&self.fd);
        self.pending.store(false, Ordering::SeqCst);
    }
}

/// A periodic timer the loop arms only while it has something to time.
pub struct Ticker {
    fd: OwnedFd,
    armed: bool,
}

impl Ticker {
    /// A timerfd registered with `poller` under `token`, disarmed.
    pub fn new(poller: &Poller, token: u64) -> io::Result<Self> {
        // SAFETY: timerfd_create takes no pointers; its descriptor is
        // owned here.
        let fd = os_result(
            unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
                )
            },
            "timerfd_create",
        )?;
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        poller.add_readable(fd.as_raw_fd(), token)?;
        Ok(Ticker { fd, armed: false })
    }

    /// Ticks every `every` from now on (`None`: stops ticking). A system
    /// call only when that changes.
    pub fn set(&mut self, every: Option<Duration>) -> io::Result<()> {
        if every.is_some() == self.armed {
            return Ok(());
        }
        let period = every.map_or(
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            |d| libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        );
        let spec = libc::itimerspec {
            it_interval: period,
            it_value: period,
        };
        // SAFETY: `spec` lives across the call; the old value is not asked.
        let ret =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        os_result(ret, "timerfd_settime")?;
        self.armed = every.is_some();
        Ok(())
    }

    /// Called when the wait reported the timer: takes its expirations.
    pub fn reset(&self) {
        take_count(&self.fd);
    }
}

/// Reads an eventfd's or timerfd's counter back to zero (non-blocking:
/// nothing to read is fine).
fn take_count(fd: &OwnedFd) {
    let mut count: u64 = 0;
    // SAFETY: reads 8 bytes into `count`, which lives across the call.
    unsafe { libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    const WAKE: u64 = u64::MAX;
    const TICK: u64 = u64::MAX - 1;

    fn tokens(p: &mut Poller) -> Vec<u64> {
        let mut t: Vec<u64> = p.wait(true).unwrap().map(|e| e.token).collect();
        t.sort();
        t
    }

    #[test]
    fn a_wake_from_another_thread_ends_the_wait_once() {
        let mut p = Poller::new().unwrap();
        let wake = Arc::new(Wake::new(&p, WAKE).unwrap());
        let w = wake.clone();
        std::thread::spawn(move || {
            w.wake();
            w.wake();
        })
        .join()
        .unwrap();
        assert_eq!(tokens(&mut p), [WAKE]);
        wake.reset();
        // Reset: nothing more to report until the next wake.
        wake.wake();
        assert_eq!(tokens(&mut p), [WAKE]);
    }

    #[test]
    fn no_wake_is_lost_while_the_loop_takes_its_mail() {
        // Producers leave mail and wake; the loop takes all of it after
        // each wake-up. A lost wake leaves mail behind with the loop
        // asleep: the wait below would never end.
        const PRODUCERS: usize = 4;
        const EACH: usize = 100_000;
        let mut p = Poller::new().unwrap();
        let wake = Arc::new(Wake::new(&p, WAKE).unwrap());
        let mail = Arc::new(parking_lot::Mutex::new(0usize));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|_| {
                let (wake, mail) = (wake.clone(), mail.clone());
                std::thread::spawn(move || {
                    for _ in 0..EACH {
                        *mail.lock() += 1;
                        wake.wake();
                    }
                })
            })
            .collect();
        let mut taken = 0;
        let mut quiet_since = std::time::Instant::now();
        while taken < PRODUCERS * EACH {
            if p.wait(false).unwrap().count() == 0 {
                let quiet = quiet_since.elapsed();
                assert!(
                    quiet < Duration::from_secs(5),
                    "no wake-up for {quiet:?} with {} items of mail waiting",
                    *mail.lock()
                );
                std::thread::yield_now();
                continue;
            }
            quiet_since = std::time::Instant::now();
            wake.reset();
            taken += std::mem::take(&mut *mail.lock());
        }
        for t in producers {
            t.join().unwrap();
        }
    }

    #[test]
    fn a_socket_is_reported_readable_once_per_arrival_and_writable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut p = Poller::new().unwrap();
        let _wake = Wake::new(&p, WAKE).unwrap();
        p.add_socket(server.as_raw_fd(), 7).unwrap();
        // Room to write at once.
        let first: Vec<Event> = p.wait(true).unwrap().collect();
        assert_eq!(first.len(), 1);
        assert!(first[0].writable && !first[0].readable);
        client.write_all(b"x").unwrap();
        let second: Vec<Event> = p.wait(true).unwrap().collect();
        assert_eq!((second[0].token, second[0].readable), (7, true));
        p.remove(server.as_raw_fd()).unwrap();
    }

    #[test]
    fn the_ticker_ticks_only_while_set() {
        let mut p = Poller::new().unwrap();
        let wake = Wake::new(&p, WAKE).unwrap();
        let mut ticker = Ticker::new(&p, TICK).unwrap();
        ticker.set(Some(Duration::from_millis(5))).unwrap();
        assert_eq!(tokens(&mut p), [TICK]);
        ticker.reset();
        assert_eq!(tokens(&mut p), [TICK]);
        ticker.reset();
        ticker.set(None).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        wake.wake();
        // Only the wake: the ticker stopped.
        assert_eq!(tokens(&mut p), [WAKE]);
    }
}
