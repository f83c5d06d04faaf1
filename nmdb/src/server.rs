//! Assembling a running server: storage, cache, database queue, engine and
//! transports; and taking it down again in the order that loses nothing.

use crate::backend::Backend;
use crate::cache::Cache;
use crate::config::{Config, Listen};
use crate::dbqueue::{DbQueue, Shared, WriteHealth};
use crate::engine::Engine;
use crate::groupcommit::Durability;
use crate::metrics::{self, Latency};
use crate::netthreads::NetThreads;
use crate::reply::Modes;
use crate::stats::Stats;
use crate::throttle::EverySecond;
use crate::transport::datagram::{self, Datagram};
use crate::transport::{sctp, tcp, tipc, udp};
use nmdb_proto::TIPC_SERVER_TYPE;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Database queue workers. More than the cores: a worker waiting on a
/// database read from disk leaves the CPU to the others (fsyncs are the
/// group commit thread's, see groupcommit.rs).
const DB_WORKERS: usize = 4;

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// The addresses the transports actually bound (useful with port 0).
#[derive(Debug, Clone, Default)]
pub struct LocalAddrs {
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    pub sctp: Option<SocketAddr>,
    /// The TIPC instance range bound.
    pub tipc: Option<(u32, u32)>,
    /// Where the metrics are served (`--metrics`).
    pub metrics: Option<SocketAddr>,
}

/// How long shutdown waits for the datagram receivers to stop.
const RECEIVERS_PATIENCE: Duration = Duration::from_secs(10);

pub struct Server {
    engine: Arc<Engine>,
    backend: Arc<dyn Backend>,
    net: Option<NetThreads>,
    datagram_threads: Vec<JoinHandle<()>>,
    /// The sockets those threads receive on, to wake them at shutdown.
    datagram_sockets: Vec<Arc<Datagram>>,
    stop: Arc<AtomicBool>,
    addrs: LocalAddrs,
    tcp_limits: Arc<tcp::Limits>,
}

/// Names the usual cause when the kernel lacks a protocol.
fn describe(e: &std::io::Error, protocol: &str) -> String {
    match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT) | Some(libc::ESOCKTNOSUPPORT) => {
            format!("the kernel has no {protocol} support ({e})")
        }
        _ => e.to_string(),
    }
}

/// Logs a transport that could not start; an error only when the user
/// asked for it by name.
fn unavailable(what: &str, explicit: bool, reason: &str) -> Result<(), StartError> {
    if explicit {
        return Err(StartError(format!("{what}: {reason}")));
    }
    log::warn!("{what} unavailable: {reason}; serving the other transports");
    Ok(())
}

/// RSS a cached object of a 16-byte key and a 100-byte value takes, about
/// (BENCHMARKS.md, memory).
const SMALL_OBJECT_BYTES: usize = 120;

/// Warns when the cache, once full of small objects, would take more than
/// the machine's memory: `-c` counts objects, not bytes, and one zero too
/// many is easy to type.
fn warn_if_a_full_cache_outgrows_memory(objects: usize) {
    if let Some(warning) =
        crate::config::physical_memory().and_then(|memory| full_cache_warning(objects, memory))
    {
        log::warn!("{warning}");
    }
}

fn full_cache_warning(objects: usize, memory: usize) -> Option<String> {
    let full = objects.saturating_mul(SMALL_OBJECT_BYTES);
    (full > memory).then(|| {
        format!(
            "a cache of {objects} objects (-c) would take about {} MiB once full of small \
             objects ({SMALL_OBJECT_BYTES} bytes each), more than this machine's {} MiB of memory",
            full >> 20,
            memory >> 20
        )
    })
}

/// The connection limit the open-file limit allows, raising it if need be.
fn connection_limit(asked: usize) -> usize {
    let fits = crate::fdlimit::fit_connections(asked);
    if fits < asked {
        log::warn!(
            "the open-file limit (ulimit -n) allows only {fits} of the {asked} connections \
             asked for (--max-connections); raise its hard limit to allow more"
        );
    }
    fits.max(1)
}

impl Server {
    /// Opens the database and starts every configured transport.
    pub fn start(cfg: &Config) -> Result<Server, StartError> {
        let backend: Arc<dyn Backend> = cfg
            .backend
            .open(&cfg.db_path, cfg.durability == Durability::Disk)
            .map_err(|e| {
                StartError(format!(
                    "cannot open the {} database: {e}",
                    cfg.backend.name()
                ))
            })?
            .into();
        log::info!(
            "backend {} on {}",
            cfg.backend.name(),
            cfg.db_path.display()
        );

        let cache =
            Arc::new(Cache::try_new(cfg.cache_objects).map_err(|e| StartError(e.to_string()))?);
        warn_if_a_full_cache_outgrows_memory(cfg.cache_objects);
        let stats = Arc::new(Stats::default());
        let modes = Arc::new(Modes::new(cfg.read_only, cfg.passive));
        let health = Arc::new(WriteHealth::default());
        let shared = Shared {
            backend: backend.clone(),
            cache: cache.clone(),
            stats: stats.clone(),
            modes: modes.clone(),
            cache_fill: cfg.cache_fill,
            health: health.clone(),
            durability: cfg.durability,
        };
        let db = DbQueue::start(shared, DB_WORKERS, cfg.db_queue_bytes)
            .map_err(|e| StartError(format!("cannot start the database workers: {e}")))?;
        let engine = Arc::new(Engine {
            cache,
            db,
            stats,
            modes,
            cache_fill: cfg.cache_fill,
            queue_full_log: EverySecond::default(),
            latency: cfg.metrics.map(|_| Arc::new(Latency::new())),
        });
        log::info!(
            "cache of {} objects{}{}{}",
            engine.cache.capacity(),
            if cfg.cache_fill {
                ""
            } else {
                ", no fill from database reads"
            },
            if cfg.read_only { ", read-only" } else { "" },
            if cfg.passive { ", passive" } else { "" },
        );

        let mut server = Server {
            engine,
            backend,
            net: None,
            datagram_threads: Vec::new(),
            datagram_sockets: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            addrs: LocalAddrs::default(),
            tcp_limits: Arc::new(tcp::Limits::new(
                connection_limit(cfg.max_connections),
                cfg.idle_timeout,
                cfg.reply_buffer_bytes,
            )),
        };
        if let Err(e) = server
            .start_transports(cfg)
            .and_then(|()| server.start_metrics(cfg, health))
        {
            server.shutdown();
            return Err(e);
        }
        Ok(server)
    }

    /// Serves the metrics (`--metrics`). Bound before the server reports
    /// ready: from then on a scraper finds them.
    fn start_metrics(&mut self, cfg: &Config, health: Arc<WriteHealth>) -> Result<(), StartError> {
        let (Some(addr), Some(latency)) = (cfg.metrics, self.engine.latency.clone()) else {
            return Ok(());
        };
        let registry = metrics::registry(metrics::Sources {
            engine: self.engine.clone(),
            backend: self.backend.clone(),
            tcp: self.tcp_limits.clone(),
            health,
            latency,
        });
        let runtime = self.net()?.listeners().clone();
        let _guard = runtime.enter();
        let listener = tcp::bind(addr, None)
            .map_err(|e| StartError(format!("cannot serve metrics on {addr}: {e}")))?;
        let local = listener.local_addr().unwrap_or(addr);
        runtime.spawn(metrics::http::serve(listener, registry));
        drop(_guard);
        self.addrs.metrics = Some(local);
        log::info!("listening on metrics {local}");
        Ok(())
    }

    fn start_transports(&mut self, cfg: &Config) -> Result<(), StartError> {
        let mut started = 0;
        if let Some((lower, upper, explicit)) = cfg.tipc {
            let what = if lower == upper {
                format!("tipc {{{TIPC_SERVER_TYPE}, {lower}}}")
            } else {
                format!("tipc {{{TIPC_SERVER_TYPE}, {lower}, {upper}}}")
            };
            match tipc::bind(lower, upper) {
                Ok(socket) => {
                    self.start_datagram(socket, &what)?;
                    self.addrs.tipc = Some((lower, upper));
                    started += 1;
                }
                Err(e) => unavailable(&what, explicit, &describe(&e, "TIPC"))?,
            }
        }
        if let Some(listen) = &cfg.tcp {
            started += self.start_tcp(listen, cfg.tcp_send_buffer)? as usize;
        }
        if let Some(l) = &cfg.udp {
            let addr = SocketAddr::new(l.addr, l.port);
            match udp::bind(addr) {
                Ok((socket, local)) => {
                    if !local.ip().is_loopback() {
                        log::warn!(
                            "udp listens on {local}, beyond this host: anyone who can reach \
                             it can read and change data, and a 16-byte request can be \
                             answered with 64 KiB to a forged source address; see SECURITY \
                             in nmdb(1)"
                        );
                    }
                    self.start_datagram(socket, &format!("udp {local}"))?;
                    self.addrs.udp = Some(local);
                    started += 1;
                }
                Err(e) => unavailable(&format!("udp {addr}"), l.explicit, &e.to_string())?,
            }
        }
        if let Some(l) = &cfg.sctp {
            let addr = SocketAddr::new(l.addr, l.port);
            match sctp::bind(addr) {
                Ok((socket, local)) => {
                    self.start_datagram(socket, &format!("sctp {local}"))?;
                    self.addrs.sctp = Some(local);
                    started += 1;
                }
                Err(e) => unavailable(&format!("sctp {addr}"), l.explicit, &describe(&e, "SCTP"))?,
            }
        }
        if started == 0 {
            return Err(StartError("no transport could be started".into()));
        }
        Ok(())
    }

    fn start_datagram(&mut self, socket: Datagram, what: &str) -> Result<(), StartError> {
        let socket = Arc::new(socket);
        let threads = datagram::spawn(socket.clone(), self.engine.clone(), self.stop.clone())
            .map_err(|e| StartError(format!("{what}: cannot start threads: {e}")))?;
        self.datagram_threads.extend(threads);
        self.datagram_sockets.push(socket);
        log::info!("listening on {what}");
        Ok(())
    }

    fn start_tcp(
        &mut self,
        listen: &Listen,
        send_buffer: Option<usize>,
    ) -> Result<bool, StartError> {
        let addr = SocketAddr::new(listen.addr, listen.port);
        let engine = self.engine.clone();
        let limits = self.tcp_limits.clone();
        let net = self.net()?;
        let loops = net.loops().clone();
        let runtime = net.listeners().clone();
        let _guard = runtime.enter();
        let listener = match tcp::bind(addr, send_buffer) {
            Ok(l) => l,
            Err(e) => {
                unavailable(&format!("tcp {addr}"), listen.explicit, &e.to_string())?;
                return Ok(false);
            }
        };
        let local = listener.local_addr().ok();
        runtime.spawn(tcp::serve(listener, engine, limits, loops));
        drop(_guard);
        self.addrs.tcp = local;
        log::info!("listening on tcp {}", local.unwrap_or(addr));
        Ok(true)
    }

    fn net(&mut self) -> Result<&NetThreads, StartError> {
        if self.net.is_none() {
            let net = NetThreads::start()
                .map_err(|e| StartError(format!("cannot start the network threads: {e}")))?;
            self.net = Some(net);
        }
        Ok(self.net.as_ref().expect("just created"))
    }

    /// Wakes the datagram receivers until every one has stopped: a TIPC
    /// wake-up can be refused (see [`Datagram::stop_receiving`]), and one
    /// receiver's batch can take the wake-ups meant for the others. A
    /// receiver still running after [`RECEIVERS_PATIENCE`] is left behind
    /// with a warning, so that the database is still closed cleanly.
    fn stop_datagram_threads(&mut self) {
        const RETRY_EVERY: Duration = Duration::from_millis(50);
        let started = std::time::Instant::now();
        let mut told = false;
        let all_stopped = |threads: &[JoinHandle<()>]| threads.iter().all(|t| t.is_finished());
        while !all_stopped(&self.datagram_threads) {
            if started.elapsed() > RECEIVERS_PATIENCE {
                log::warn!(
                    "datagram receivers still running after {RECEIVERS_PATIENCE:?}: \
                     shutting down without them"
                );
                self.datagram_threads.clear();
                return;
            }
            for socket in &self.datagram_sockets {
                if let Err(e) = socket.stop_receiving() {
                    // Said once: the wake-ups are tried again until the
                    // receivers have stopped.
                    if !std::mem::replace(&mut told, true) {
                        log::warn!(
                            "{}: cannot wake the receivers to stop, trying again: {e}",
                            socket.kind().name()
                        );
                    }
                }
            }
            let tried = std::time::Instant::now();
            while !all_stopped(&self.datagram_threads) && tried.elapsed() < RETRY_EVERY {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for t in self.datagram_threads.drain(..) {
            if t.join().is_err() {
                log::error!("a datagram receive thread panicked");
            }
        }
    }

    pub fn local_addrs(&self) -> &LocalAddrs {
        &self.addrs
    }

    pub fn modes(&self) -> &Modes {
        &self.engine.modes
    }

    /// Stops taking requests, applies every queued database write, and
    /// makes the database durable.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stop_datagram_threads();
        if let Some(net) = self.net.take() {
            net.shutdown(Duration::from_secs(1));
        }
        self.engine.db.shutdown();
        if let Err(e) = self.backend.flush() {
            log::error!("flushing the database at exit failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_that_would_outgrow_memory_once_full_is_warned_about() {
        const GIB: usize = 1 << 30;
        // The default cache, 131072 objects: about 15 MiB full.
        assert_eq!(full_cache_warning(131_072, GIB), None);
        let warning = full_cache_warning(100_000_000, GIB).expect("a warning");
        assert!(
            warning.contains("100000000 objects") && warning.contains("1024 MiB of memory"),
            "{warning}"
        );
    }
}
