//! The command line, option for option the original's, plus long options
//! for what is new. Every default lives in [`defaults`]; the help text, the
//! man page and the code read them from there (a test compares them).
//!
//! Everything is validated here, before any file or socket is opened.

use crate::backend::BackendKind;
use crate::cache::Cache;
use crate::groupcommit::Durability;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// This machine's physical memory in bytes, when the system tells.
pub fn physical_memory() -> Option<usize> {
    // SAFETY: sysconf reads a system constant; it has no preconditions.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let pages = usize::try_from(pages).ok().filter(|&p| p > 0)?;
    let page_size = usize::try_from(page_size).ok().filter(|&p| p > 0)?;
    Some(pages.saturating_mul(page_size))
}

pub mod defaults {
    use nmdb_proto::{DEFAULT_INET_PORT, DEFAULT_TIPC_PORT};

    pub const BACKEND: &str = "rocksdb";
    pub const DB_PATH: &str = "database";
    pub const TIPC_LOWER: u32 = DEFAULT_TIPC_PORT;
    pub const TCP_PORT: u16 = DEFAULT_INET_PORT;
    pub const UDP_PORT: u16 = DEFAULT_INET_PORT;
    pub const SCTP_PORT: u16 = DEFAULT_INET_PORT;
    pub const LISTEN_ADDR: &str = "0.0.0.0";
    /// Cache size in thousands of objects (times 1024).
    pub const CACHE_THOUSANDS: usize = 128;
    /// Objects per "thousand", as the original counts them.
    pub const CACHE_UNIT: usize = 1024;
    /// Most TCP connections open at once.
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// Seconds a TCP connection may stay idle; 0: forever.
    pub const IDLE_TIMEOUT_SECS: u64 = 0;
    /// Bytes the database queue may hold, in MiB.
    pub const DB_QUEUE_MIB: usize = 64;
    /// Unread replies all TCP connections may hold together, in MiB.
    pub const REPLY_BUFFER_MIB: usize = 256;
    /// The kernel's send buffer of each TCP connection, in KiB; 0: the
    /// kernel sizes it.
    pub const TCP_SEND_BUFFER_KIB: usize = 256;
    /// When synchronous writes are answered.
    pub const DURABILITY: &str = "disk";
}

/// The options as typed; see [`Config`] for the validated form.
#[derive(Parser, Debug)]
#[command(
    name = "nmdb",
    version,
    about = "nmdb: a network cache and database server (TIPC, TCP, UDP, SCTP)",
    disable_version_flag = true,
    after_help = "Signals: SIGTERM/SIGINT exit cleanly (queued writes are applied), SIGHUP \
                  reopens the log file, SIGUSR1 switches to read-only, SIGUSR2 toggles passive mode."
)]
struct Args {
    /// Storage backend: rocksdb or null
    #[arg(short = 'b', value_name = "backend", default_value = defaults::BACKEND)]
    backend: String,
    /// Database path (created if missing)
    #[arg(short = 'd', value_name = "dbpath", default_value = defaults::DB_PATH)]
    dbpath: PathBuf,
    /// Lowest TIPC instance (port) to bind
    #[arg(short = 'l', value_name = "lower", default_value_t = defaults::TIPC_LOWER)]
    tipc_lower: u32,
    /// Highest TIPC instance to bind (default: the same as lower)
    #[arg(short = 'L', value_name = "upper")]
    tipc_upper: Option<u32>,
    /// TCP listening port
    #[arg(short = 't', value_name = "tcpport", default_value_t = defaults::TCP_PORT)]
    tcp_port: u16,
    /// TCP listening address
    #[arg(short = 'T', value_name = "tcpaddr", default_value = defaults::LISTEN_ADDR)]
    tcp_addr: String,
    /// UDP listening port
    #[arg(short = 'u', value_name = "udpport", default_value_t = defaults::UDP_PORT)]
    udp_port: u16,
    /// UDP listening address
    #[arg(short = 'U', value_name = "udpaddr", default_value = defaults::LISTEN_ADDR)]
    udp_addr: String,
    /// SCTP listening port
    #[arg(short = 's', value_name = "sctpport", default_value_t = defaults::SCTP_PORT)]
    sctp_port: u16,
    /// SCTP listening address
    #[arg(short = 'S', value_name = "sctpaddr", default_value = defaults::LISTEN_ADDR)]
    sctp_addr: String,
    /// Cache size, in thousands of objects
    #[arg(short = 'c', value_name = "nobj", default_value_t = defaults::CACHE_THOUSANDS)]
    cache_thousands: usize,
    /// Log to this file ('-' is standard output) [default: standard output]
    #[arg(short = 'o', value_name = "fname")]
    log_file: Option<PathBuf>,
    /// Write the process id to this file
    #[arg(short = 'i', value_name = "pidfile")]
    pid_file: Option<PathBuf>,
    /// Stay in the foreground
    #[arg(short = 'f')]
    foreground: bool,
    /// Passive mode: process requests, never reply
    #[arg(short = 'p')]
    passive: bool,
    /// Read-only mode: refuse every change
    #[arg(short = 'r')]
    read_only: bool,
    /// Never fill the cache from database reads (the original's behaviour)
    #[arg(long = "no-cache-fill")]
    no_cache_fill: bool,
    /// Do not listen on TIPC
    #[arg(long = "no-tipc")]
    no_tipc: bool,
    /// Do not listen on TCP
    #[arg(long = "no-tcp")]
    no_tcp: bool,
    /// Do not listen on UDP
    #[arg(long = "no-udp")]
    no_udp: bool,
    /// Do not listen on SCTP
    #[arg(long = "no-sctp")]
    no_sctp: bool,
    /// Most TCP connections open at once; new ones beyond are closed
    #[arg(long = "max-connections", value_name = "n", default_value_t = defaults::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Close TCP connections idle this many seconds (0: never)
    #[arg(long = "idle-timeout", value_name = "secs", default_value_t = defaults::IDLE_TIMEOUT_SECS)]
    idle_timeout: u64,
    /// Memory for requests queued for the database, in MiB
    #[arg(long = "db-queue-mib", value_name = "mib", default_value_t = defaults::DB_QUEUE_MIB)]
    db_queue_mib: usize,
    /// Memory for replies TCP clients have not read yet, all connections
    /// together, in MiB; past it, connections whose clients stopped
    /// reading are closed
    #[arg(long = "reply-buffer-mib", value_name = "mib", default_value_t = defaults::REPLY_BUFFER_MIB)]
    reply_buffer_mib: usize,
    /// The kernel's send buffer of each TCP connection, in KiB (0: the
    /// kernel sizes it, up to its net.ipv4.tcp_wmem maximum)
    #[arg(long = "tcp-send-buffer-kib", value_name = "kib", default_value_t = defaults::TCP_SEND_BUFFER_KIB)]
    tcp_send_buffer_kib: usize,
    /// Serve Prometheus metrics over HTTP at http://addr:port/metrics (off
    /// unless given)
    #[arg(long = "metrics", value_name = "addr:port")]
    metrics: Option<String>,
    /// When synchronous SET/DEL are answered: disk (fsynced, survives a
    /// power loss) or process (written, survives a server crash)
    #[arg(long = "durability", value_name = "level", default_value = defaults::DURABILITY)]
    durability: String,
}

/// Where an IP transport listens, or `None` when switched off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: IpAddr,
    pub port: u16,
    /// The user named the address or port: failing to start this transport
    /// is then an error, not a log line.
    pub explicit: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub backend: BackendKind,
    pub db_path: PathBuf,
    /// TIPC name sequence `{lower, upper}`, or `None` when switched off.
    pub tipc: Option<(u32, u32, bool)>,
    pub tcp: Option<Listen>,
    pub udp: Option<Listen>,
    pub sctp: Option<Listen>,
    /// Cache capacity in objects.
    pub cache_objects: usize,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub foreground: bool,
    pub passive: bool,
    pub read_only: bool,
    pub cache_fill: bool,
    pub max_connections: usize,
    /// Close idle TCP connections after this long (`None`: never).
    pub idle_timeout: Option<std::time::Duration>,
    /// Bytes the database queue may hold before clients are slowed down.
    pub db_queue_bytes: usize,
    /// Bytes of unread replies all TCP connections may hold together.
    pub reply_buffer_bytes: usize,
    /// The kernel's send buffer of each TCP connection (`None`: the
    /// kernel sizes it).
    pub tcp_send_buffer: Option<usize>,
    /// Where to serve the Prometheus metrics (`None`: nowhere).
    pub metrics: Option<SocketAddr>,
    pub durability: Durability,
}

/// Smallest and largest `--tcp-send-buffer-kib` other than 0: below 16
/// KiB a connection could not take one whole reply frame at once; above
/// 1 GiB the kernel cannot be asked for it.
const TCP_SEND_BUFFER_KIB_RANGE: std::ops::RangeInclusive<usize> = 16..=1 << 20;

/// Bytes of `--tcp-send-buffer-kib` (`None` for 0: the kernel's own
/// sizing).
fn tcp_send_buffer(kib: usize) -> Result<Option<usize>, String> {
    match kib {
        0 => Ok(None),
        k if TCP_SEND_BUFFER_KIB_RANGE.contains(&k) => Ok(Some(k << 10)),
        k => Err(format!(
            "--tcp-send-buffer-kib {k}: must be 0 (the kernel sizes it) or from {} to {}",
            TCP_SEND_BUFFER_KIB_RANGE.start(),
            TCP_SEND_BUFFER_KIB_RANGE.end()
        )),
    }
}

/// Bytes of a size option given in MiB, which must be at least one.
fn mib(option: &str, value: usize) -> Result<usize, String> {
    match value.checked_mul(1 << 20) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(format!(
            "{option} {value} is out of range (1 to {})",
            usize::MAX >> 20
        )),
    }
}

fn resolve(host: &str, what: &str) -> Result<IpAddr, String> {
    nmdb_net::resolve_host(host)
        .map_err(|e| format!("{what} '{host}' is not an address or a known host name: {e}"))
}

/// The address of `--metrics`: an IP address (IPv6 in brackets) or a host
/// name, a colon and a port (0: one the kernel picks).
fn metrics_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let bad = || format!("--metrics '{text}' is not ADDR:PORT (e.g. 127.0.0.1:9100 or [::1]:9100)");
    // An address alone would split into a shorter one and a "port".
    if text.parse::<IpAddr>().is_ok() {
        return Err(bad());
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains(':') {
        return Err(bad());
    }
    Ok(SocketAddr::new(resolve(host, "--metrics host")?, port))
}

/// True when the user gave option `-<short>` (in any spelling).
fn given(matches: &clap::ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
}

impl Config {
    /// Parses and validates `args` (program name first). `Err` carries the
    /// message to print and whether it is help (exit 0) or an error.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let mut cmd = Args::command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        let a = Args::from_arg_matches(&matches)?;
        let invalid = |msg: String| {
            cmd.clone()
                .error(clap::error::ErrorKind::ValueValidation, msg)
        };

        let backend = BackendKind::parse(&a.backend).map_err(invalid)?;
        let durability =
            Durability::parse(&a.durability).map_err(|e| invalid(format!("--durability: {e}")))?;
        if a.cache_thousands == 0 {
            return Err(invalid(
                "cache size (-c) must be at least 1 (thousands of objects)".into(),
            ));
        }
        let cache_objects = a
            .cache_thousands
            .checked_mul(defaults::CACHE_UNIT)
            .ok_or_else(|| {
                invalid(format!(
                    "cache size (-c) {} is too large",
                    a.cache_thousands
                ))
            })?;
        // The index is allocated at start: one that cannot fit in memory
        // would end in an abort or the OOM killer instead of this message.
        let index = Cache::index_bytes(cache_objects);
        if let Some(memory) = physical_memory().filter(|&m| index > m) {
            return Err(invalid(format!(
                "cache size (-c) {}: the index of {cache_objects} objects alone takes {} MiB, \
                 more than this machine's {} MiB of memory",
                a.cache_thousands,
                index >> 20,
                memory >> 20
            )));
        }
        let upper = a.tipc_upper.unwrap_or(a.tipc_lower);
        if upper < a.tipc_lower {
            return Err(invalid(format!(
                "TIPC upper port (-L {upper}) is below the lower port (-l {})",
                a.tipc_lower
            )));
        }
        let listen =
            |off: bool, addr: &str, port: u16, addr_id: &str, port_id: &str, what: &str| {
                if off {
                    return Ok(None);
                }
                Ok(Some(Listen {
                    addr: resolve(addr, what)?,
                    port,
                    explicit: given(&matches, addr_id) || given(&matches, port_id),
                }))
            };
        let tcp = listen(
            a.no_tcp,
            &a.tcp_addr,
            a.tcp_port,
            "tcp_addr",
            "tcp_port",
            "TCP address",
        )
        .map_err(invalid)?;
        let udp = listen(
            a.no_udp,
            &a.udp_addr,
            a.udp_port,
            "udp_addr",
            "udp_port",
            "UDP address",
        )
        .map_err(invalid)?;
        let sctp = listen(
            a.no_sctp,
            &a.sctp_addr,
            a.sctp_port,
            "sctp_addr",
            "sctp_port",
            "SCTP address",
        )
        .map_err(invalid)?;
        if a.max_connections == 0 {
            return Err(invalid("--max-connections must be at least 1".into()));
        }
        let db_queue_bytes = mib("--db-queue-mib", a.db_queue_mib).map_err(invalid)?;
        let reply_buffer_bytes = mib("--reply-buffer-mib", a.reply_buffer_mib).map_err(invalid)?;
        let tcp_send_buffer = tcp_send_buffer(a.tcp_send_buffer_kib).map_err(invalid)?;
        let metrics = a
            .metrics
            .as_deref()
            .map(metrics_addr)
            .transpose()
            .map_err(invalid)?;
        let tipc_explicit = given(&matches, "tipc_lower") || given(&matches, "tipc_upper");
        let log_file = a.log_file.filter(|p| p.as_os_str() != "-");
        Ok(Config {
            backend,
            db_path: a.dbpath,
            tipc: (!a.no_tipc).then_some((a.tipc_lower, upper, tipc_explicit)),
            tcp,
            udp,
            sctp,
            cache_objects,
            log_file,
            pid_file: a.pid_file,
            foreground: a.foreground,
            passive: a.passive,
            read_only: a.read_only,
            cache_fill: !a.no_cache_fill,
            max_connections: a.max_connections,
            idle_timeout: (a.idle_timeout > 0)
                .then(|| std::time::Duration::from_secs(a.idle_timeout)),
            db_queue_bytes,
            reply_buffer_bytes,
            tcp_send_buffer,
            metrics,
            durability,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::from_args(std::iter::once("nmdb").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_original() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.backend, BackendKind::Rocksdb);
        assert_eq!(c.db_path, PathBuf::from("database"));
        assert_eq!(c.tipc, Some((10, 10, false)));
        let tcp = c.tcp.unwrap();
        assert_eq!(
            (tcp.addr.to_string().as_str(), tcp.port, tcp.explicit),
            ("0.0.0.0", 26010, false)
        );
        assert_eq!(c.udp.unwrap().port, 26010);
        assert_eq!(c.sctp.unwrap().port, 26010);
        assert_eq!(c.cache_objects, 128 * 1024);
        assert!(!c.foreground && !c.passive && !c.read_only && c.cache_fill);
    }

    #[test]
    fn original_options_are_accepted() {
        let c = parse(&[
            "-b",
            "null",
            "-d",
            "/tmp/x",
            "-l",
            "11",
            "-L",
            "13",
            "-t",
            "1",
            "-T",
            "127.0.0.1",
            "-u",
            "2",
            "-U",
            "127.0.0.1",
            "-s",
            "3",
            "-S",
            "127.0.0.1",
            "-c",
            "2",
            "-o",
            "-",
            "-i",
            "/tmp/pid",
            "-f",
            "-p",
            "-r",
        ])
        .unwrap();
        assert_eq!(c.backend, BackendKind::Null);
        assert_eq!(c.tipc, Some((11, 13, true)));
        assert_eq!(c.tcp.as_ref().unwrap().port, 1);
        assert!(c.tcp.unwrap().explicit);
        assert_eq!(c.cache_objects, 2048);
        assert_eq!(c.log_file, None);
        assert!(c.foreground && c.passive && c.read_only);
    }

    #[test]
    fn zero_cache_size_is_an_error_not_a_crash() {
        let e = parse(&["-c", "0"]).unwrap_err();
        assert!(e.to_string().contains("cache size"), "{e}");
        assert!(parse(&["-c", "lots"]).is_err());
    }

    #[test]
    fn a_cache_whose_index_cannot_fit_in_memory_is_refused_before_start() {
        // 10^15 objects: an index of petabytes, on any machine.
        let e = parse(&["-c", "1000000000000"]).unwrap_err().to_string();
        assert!(
            e.contains("cache size (-c) 1000000000000") && e.contains("MiB of memory"),
            "{e}"
        );
        assert!(parse(&["-c", "1024"]).is_ok());
    }

    #[test]
    fn port_out_of_range_is_an_error() {
        assert!(parse(&["-t", "65536"]).is_err());
        assert!(parse(&["-u", "-1"]).is_err());
    }

    #[test]
    fn the_originals_other_backends_are_refused_with_a_reason() {
        for name in ["qdbm", "tdb", "bdb", "tc", "leveldb"] {
            let e = parse(&["-b", name]).unwrap_err().to_string();
            assert!(
                e.contains("another format") && e.contains("rocksdb, null"),
                "{e}"
            );
        }
        assert!(parse(&["-b", "mysql"])
            .unwrap_err()
            .to_string()
            .contains("unknown backend"));
    }

    #[test]
    fn tipc_upper_below_lower_is_an_error() {
        assert!(parse(&["-l", "12", "-L", "11"]).is_err());
    }

    #[test]
    fn transports_can_be_switched_off() {
        let c = parse(&["--no-tipc", "--no-sctp", "--no-udp"]).unwrap();
        assert!(c.tipc.is_none() && c.sctp.is_none() && c.udp.is_none() && c.tcp.is_some());
    }

    #[test]
    fn load_limits_have_defaults_and_can_be_set() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.db_queue_bytes, 64 << 20);
        assert_eq!(c.reply_buffer_bytes, 256 << 20);
        assert_eq!(c.tcp_send_buffer, Some(256 << 10));
        let c = parse(&[
            "--max-connections",
            "5",
            "--idle-timeout",
            "30",
            "--db-queue-mib",
            "2",
            "--reply-buffer-mib",
            "3",
            "--tcp-send-buffer-kib",
            "64",
        ])
        .unwrap();
        assert_eq!(c.max_connections, 5);
        assert_eq!(c.idle_timeout, Some(std::time::Duration::from_secs(30)));
        assert_eq!(c.db_queue_bytes, 2 << 20);
        assert_eq!(c.reply_buffer_bytes, 3 << 20);
        assert_eq!(c.tcp_send_buffer, Some(64 << 10));
        let c = parse(&["--tcp-send-buffer-kib", "0"]).unwrap();
        assert_eq!(c.tcp_send_buffer, None, "0: the kernel sizes it");
        for bad in [
            ["--tcp-send-buffer-kib", "15"],
            ["--tcp-send-buffer-kib", "1048577"],
            ["--tcp-send-buffer-kib", "18446744073709551615"],
            ["--max-connections", "0"],
            ["--db-queue-mib", "0"],
            ["--reply-buffer-mib", "0"],
            ["--reply-buffer-mib", "18446744073709551615"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metrics_are_off_unless_given_an_address_and_port() {
        assert_eq!(parse(&[]).unwrap().metrics, None);
        for (arg, want) in [("127.0.0.1:9100", "127.0.0.1:9100"), ("[::1]:0", "[::1]:0")] {
            let c = parse(&["--metrics", arg]).unwrap();
            assert_eq!(c.metrics, Some(want.parse().unwrap()), "{arg}");
        }
        let named = parse(&["--metrics", "localhost:9100"])
            .unwrap()
            .metrics
            .unwrap();
        assert!(named.ip().is_loopback() && named.port() == 9100, "{named}");
        for bad in [
            "9100",
            "127.0.0.1",
            "127.0.0.1:http",
            ":9100",
            "::1:9100",
            "[::1]",
        ] {
            let e = parse(&["--metrics", bad]).unwrap_err().to_string();
            assert!(e.contains("--metrics") && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn help_is_not_an_error() {
        let e = parse(&["-h"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
