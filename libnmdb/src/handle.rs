//! The handle behind `nmdb_t *`: the servers (kept in the original's order),
//! the request id counter and the timeout.
//!
//! Thread safety: the server list sits behind a read-write lock (adding a
//! server is rare, picking one is every call) and each server's connection
//! behind its own mutex, held for one whole request/reply exchange. So
//! threads sharing a handle never interleave bytes on one connection, calls
//! to different servers run in parallel, and calls to one server queue up.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use nmdb_proto::{Reply, Request, ID_MASK};
use parking_lot::{Mutex, RwLock};

use crate::conn::{self, Exchange, Link};
use crate::error::Error;
use crate::placement;
use crate::server::Endpoint;
use crate::timeout::{self, Deadline};

/// One server and its connection.
pub struct Server {
    pub endpoint: Endpoint,
    link: Mutex<Box<dyn Link>>,
}

/// The library handle (`nmdb_t`, `struct nmdb_conn` in C).
pub struct Handle {
    servers: RwLock<Vec<Arc<Server>>>,
    next_id: AtomicU32,
    timeout_ms: AtomicU32,
}

impl Default for Handle {
    fn default() -> Self {
        Self::new()
    }
}

impl Handle {
    /// A handle with no server, with the timeout from the environment.
    pub fn new() -> Self {
        Handle {
            servers: RwLock::new(Vec::new()),
            next_id: AtomicU32::new(1),
            timeout_ms: AtomicU32::new(timeout::initial_timeout_ms()),
        }
    }

    pub fn timeout_ms(&self) -> u32 {
        self.timeout_ms.load(Ordering::Relaxed)
    }

    /// 0 waits forever.
    pub fn set_timeout_ms(&self, ms: u32) {
        self.timeout_ms.store(ms, Ordering::Relaxed);
    }

    fn deadline(&self) -> Deadline {
        Deadline::after_ms(self.timeout_ms())
    }

    /// Connects (TCP) or prepares (datagrams) a link and inserts the server
    /// at its place in the order. Equal servers keep the order they were
    /// added in.
    pub fn add_server(&self, endpoint: Endpoint) -> Result<(), Error> {
        let link = conn::open(&endpoint, self.deadline())?;
        let server = Arc::new(Server {
            endpoint,
            link: Mutex::new(link),
        });
        let mut servers = self.servers.write();
        let at = servers.partition_point(|s| s.endpoint <= endpoint);
        servers.insert(at, server);
        Ok(())
    }

    pub fn server_count(&self) -> usize {
        self.servers.read().len()
    }

    /// The servers in the library's order.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.servers.read().iter().map(|s| s.endpoint).collect()
    }

    /// The server a request about `key` goes to.
    pub fn server_for(&self, key: &[u8]) -> Result<Arc<Server>, Error> {
        let servers = self.servers.read();
        let i = placement::pick(key, servers.len()).ok_or(Error::NoServer)?;
        Ok(Arc::clone(&servers[i]))
    }

    /// The one server key walks go to; key walking over several servers
    /// has no meaning (each holds its own keys), as in the original.
    pub fn only_server(&self) -> Result<Arc<Server>, Error> {
        let servers = self.servers.read();
        match servers.len() {
            1 => Ok(Arc::clone(&servers[0])),
            n => Err(Error::NotOneServer(n)),
        }
    }

    pub fn all_servers(&self) -> Vec<Arc<Server>> {
        self.servers.read().clone()
    }

    /// A fresh 28-bit request id; 0 is skipped so that a zeroed buffer is
    /// never taken for a reply.
    fn next_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed) & ID_MASK;
            if id != 0 {
                return id;
            }
        }
    }

    /// Sends `request` to `server` and hands the reply to `read`, all under
    /// the call's deadline and the server's lock.
    pub fn call<R>(
        &self,
        server: &Server,
        request: Request<'_>,
        flags: u16,
        read: impl FnOnce(Reply<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let ex = Exchange {
            request,
            flags,
            id: self.next_id(),
            deadline: self.deadline(),
        };
        let mut link = server.link.lock();
        let msg = link.call(&ex)?;
        read(Reply::parse(msg)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Transport;

    fn udp(port: u16) -> Endpoint {
        Endpoint::inet(Transport::Udp, "127.0.0.1", port.into()).unwrap()
    }

    #[test]
    fn servers_are_kept_in_library_order_whatever_the_adding_order() {
        let h = Handle::new();
        for port in [20224, 20222, 20223] {
            h.add_server(udp(port)).unwrap();
        }
        assert_eq!(h.endpoints(), vec![udp(20224), udp(20222), udp(20223)]);
    }

    #[test]
    fn ids_skip_zero_and_stay_within_28_bits() {
        let h = Handle::new();
        h.next_id.store(ID_MASK, Ordering::Relaxed);
        assert_eq!(h.next_id(), ID_MASK);
        assert_eq!(h.next_id(), 1);
        h.next_id.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(h.next_id(), ID_MASK);
        assert_eq!(h.next_id(), 1);
    }

    #[test]
    fn key_walks_need_exactly_one_server() {
        let h = Handle::new();
        assert!(matches!(h.only_server(), Err(Error::NotOneServer(0))));
        h.add_server(udp(1)).unwrap();
        assert!(h.only_server().is_ok());
        h.add_server(udp(2)).unwrap();
        assert!(matches!(h.only_server(), Err(Error::NotOneServer(2))));
    }
}
