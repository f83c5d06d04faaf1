//! Prometheus metrics (`--metrics ADDR:PORT`): what is measured, and how
//! it is encoded; [`http`] serves it.
//!
//! Nearly every figure already lives where it is counted (the STATS
//! counters, the cache, the database queue's budget, the TCP connection
//! limits, the database's health, RocksDB's properties) and is only read
//! when a scrape comes: a [`Collector`] turns those snapshots into the text
//! format, so the request path pays nothing for them. The one figure
//! recorded per request is its latency ([`latency`]): lock-free, with no
//! allocation and no system call (the clock is read through the vDSO),
//! and only when metrics are on. That costs two clock reads and two
//! relaxed atomic additions per request: about 70 ns on the 2-core test
//! VM, where a cache-only request takes 13 to 18 µs from client to client
//! (BENCHMARKS.md).
//!
//! Latency runs from the request parsed to its reply handed on. An answer
//! known at once is recorded as it is appended to the transport's output
//! buffer, which the transport writes to the socket once it has handled
//! the messages of that read: close enough, and it spares a clock read per
//! write. An answer the database queue produces later (a GET that misses
//! the cache, a synchronous SET or DEL, CAS, INCR, key walks) carries the
//! start in its [`ReplyTo`](crate::reply::ReplyTo) and is recorded as
//! that reply is sent (just before: a client that holds its answer finds
//! it counted). An asynchronous write is answered at once and recorded
//! then. Nothing is recorded while the server is passive, nor for messages
//! that do not parse.
//!
//! Crates: `prometheus-client` for the exposition format (its registry and
//! encoder, fed by our own collector; its `Histogram` locks per
//! observation, so ours is [`latency::Latency`]); `hyper`, `hyper-util` and
//! `http-body-util` for the HTTP endpoint on the server's tokio runtime.

pub mod http;
pub mod latency;

pub use latency::{Kind, Latency, Timer};

use crate::backend::Backend;
use crate::dbqueue::WriteHealth;
use crate::engine::Engine;
use crate::transport::tcp;
use nmdb_proto::stats::COUNTER_NAMES;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;

/// Every metric name is `nmdb_` and this.
const PREFIX: &str = "nmdb";

/// The latency histogram's name, after the prefix.
const LATENCY: &str = "request_duration_seconds";

/// What each STATS counter counts, in [`COUNTER_NAMES`] order.
const COUNTER_HELP: [&str; COUNTER_NAMES.len()] = [
    "Cache-only GET requests.",
    "Cache-only SET requests.",
    "Cache-only DEL requests.",
    "Cache-only CAS requests.",
    "Cache-only INCR requests.",
    "GET requests for the cache, then the database.",
    "SET requests for the database (asynchronous and synchronous).",
    "DEL requests for the database (asynchronous and synchronous).",
    "CAS requests for the database.",
    "INCR requests for the database.",
    "GET requests answered from the cache.",
    "Cache-only GET requests that found nothing.",
    "Database reads of a GET that found the key.",
    "Database reads of a GET that found nothing.",
    "Messages received over TIPC.",
    "Messages received over TCP.",
    "Messages received over UDP.",
    "Messages received over SCTP.",
    "Requests refused for another protocol version.",
    "Requests refused as malformed.",
    "Requests of an unknown type.",
    "FIRSTKEY requests.",
    "NEXTKEY requests.",
];

/// Where a scrape reads its figures.
pub struct Sources {
    pub engine: Arc<Engine>,
    pub backend: Arc<dyn Backend>,
    pub tcp: Arc<tcp::Limits>,
    pub health: Arc<WriteHealth>,
    pub latency: Arc<Latency>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("metrics::Sources")
    }
}

/// Writes one counter (`_total` is added) or gauge.
fn scalar(
    encoder: &mut DescriptorEncoder<'_>,
    kind: MetricType,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    match kind {
        MetricType::Counter => metric.encode_counter::<NoLabelSet, u64, u64>(&value, None),
        _ => metric.encode_gauge(&value),
    }
}

impl Collector for Sources {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        let e = &mut encoder;
        let counters = self.engine.stats.snapshot();
        for ((name, help), value) in COUNTER_NAMES.iter().zip(COUNTER_HELP).zip(counters) {
            scalar(e, Counter, name, help, value)?;
        }

        let mut metric = e.encode_descriptor(
            LATENCY,
            "Time from a request parsed to its reply handed to the transport.",
            None,
            MetricType::Histogram,
        )?;
        let mut bounds = [(0.0, 0); latency::BOUNDS + 1];
        for kind in Latency::kinds() {
            let snap = self.latency.snapshot(kind);
            for (i, (bound, count)) in bounds.iter_mut().enumerate() {
                *bound = latency::bound_seconds(i);
                *count = snap.buckets[i];
            }
            let (op, mode) = kind.labels();
            metric
                .encode_family(&[("op", op), ("mode", mode)])?
                .encode_histogram::<NoLabelSet>(snap.sum_seconds, snap.count(), &bounds, None)?;
        }

        let cache = &self.engine.cache;
        let as_u64 = |n: usize| n as u64;
        scalar(
            e,
            Gauge,
            "cache_objects",
            "Objects in the cache.",
            as_u64(cache.objects()),
        )?;
        scalar(
            e,
            Gauge,
            "cache_bytes",
            "Bytes of keys and values in the cache.",
            as_u64(cache.bytes()),
        )?;
        scalar(
            e,
            Gauge,
            "cache_capacity_objects",
            "Most objects the cache holds (-c).",
            as_u64(cache.capacity()),
        )?;

        let budget = self.engine.db.budget();
        scalar(
            e,
            Gauge,
            "db_queue_requests",
            "Requests waiting in the database workers' queues (a key walk once per worker).",
            as_u64(self.engine.db.waiting()),
        )?;
        scalar(
            e,
            Gauge,
            "db_queue_bytes",
            "Bytes held by requests queued for the database.",
            as_u64(budget.queued()),
        )?;
        scalar(
            e,
            Gauge,
            "db_queue_limit_bytes",
            "Bytes the database queue may hold before clients wait (--db-queue-mib).",
            as_u64(budget.limit()),
        )?;
        let (read_errors, write_errors) = self.health.failures();
        scalar(
            e,
            Counter,
            "db_read_errors",
            "Database reads that failed (answered ERR_DB).",
            read_errors,
        )?;
        scalar(
            e,
            Counter,
            "db_write_errors",
            "Database writes (batches) that failed; their requests are answered ERR_DB.",
            write_errors,
        )?;

        let commits = self.engine.db.commits();
        scalar(
            e,
            Counter,
            "db_fsyncs",
            "Fsyncs of the database log that answered synchronous writes (group commits).",
            commits.fsyncs,
        )?;
        scalar(
            e,
            Counter,
            "db_fsync_requests",
            "Synchronous SET and DEL requests answered by those fsyncs.",
            commits.requests,
        )?;
        e.encode_descriptor(
            "db_fsync_seconds",
            "Time spent in those fsyncs.",
            None,
            Counter,
        )?
        .encode_counter::<NoLabelSet, f64, u64>(&commits.fsync_time.as_secs_f64(), None)?;

        scalar(
            e,
            Gauge,
            "tcp_connections",
            "TCP connections open.",
            as_u64(self.tcp.open_connections()),
        )?;
        scalar(
            e,
            Gauge,
            "tcp_connections_max",
            "Most TCP connections open at once (--max-connections).",
            as_u64(self.tcp.max_connections),
        )?;
        scalar(
            e,
            Counter,
            "tcp_connections_refused",
            "TCP connections closed at once for being over --max-connections.",
            as_u64(self.tcp.refused_connections()),
        )?;
        scalar(
            e,
            Gauge,
            "tcp_unread_reply_bytes",
            "Replies waiting for TCP clients to read them (limit: --reply-buffer-mib).",
            as_u64(self.tcp.unsent.held()),
        )?;
        scalar(
            e,
            Counter,
            "tcp_connections_closed_unread",
            "TCP connections closed because their clients stopped reading while \
             unread replies were over --reply-buffer-mib.",
            as_u64(self.tcp.unsent.closed_connections()),
        )?;

        for g in self.backend.gauges() {
            scalar(e, Gauge, g.name, g.help, g.value)?;
        }
        Ok(())
    }
}

/// The registry a scrape encodes: every metric, named `nmdb_*`.
pub fn registry(sources: Sources) -> Registry {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(sources));
    registry
}

/// The Prometheus text format of everything in `registry`.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}
