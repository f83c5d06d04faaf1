"""The Prometheus metrics (--metrics) of a real server, read the way
Prometheus reads them: scraped over HTTP and parsed with the Prometheus
client's own text parser. Each test sends requests of its own and checks
that the counters and latency histograms moved by exactly that many.
"""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import nmdb
from realserver import Server

N = 25


@pytest.fixture(scope="module")
def srv(nmdb_binary, tmp_path_factory):
    """One server with metrics on a free port; tests use their own keys."""
    server = Server(
        nmdb_binary,
        tmp_path_factory.mktemp("metrics"),
        extra_args=("--metrics", "127.0.0.1:0"),
    ).start()
    assert server.metrics_address, "no 'listening on metrics' line in the log"
    yield server
    assert server.stop() == 0, "the metrics server did not exit cleanly"


def scrape(server):
    """{(sample name, sorted labels): value} of one scrape."""
    host, port = server.metrics_address
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def latency_count(samples, op, mode):
    return value(samples, "nmdb_request_duration_seconds_count", op=op, mode=mode)


def moved(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def test_cache_sets_move_their_counter_and_histogram_by_their_number(srv, connect):
    cache = connect(nmdb.Cache, srv)
    cache.cache_get("warm-up", None)  # the connection is open before counting
    before = scrape(srv)
    for i in range(N):
        cache.cache_set(f"metrics-cache-{i}", i)
    after = scrape(srv)
    assert moved(before, after, "nmdb_cache_set_total") == N
    assert moved(before, after, "nmdb_msg_tcp_total") == N
    assert latency_count(after, "set", "cache") - latency_count(before, "set", "cache") == N
    labels = {"op": "set", "mode": "cache"}
    assert moved(before, after, "nmdb_request_duration_seconds_bucket", le="+Inf", **labels) == N
    assert moved(before, after, "nmdb_request_duration_seconds_sum", **labels) > 0
    # Nothing else was timed.
    for op, mode in [("set", "normal"), ("set", "sync"), ("get", "cache")]:
        assert latency_count(after, op, mode) == latency_count(before, op, mode), (op, mode)


def test_normal_gets_that_miss_are_timed_when_the_database_answers(srv, connect):
    db = connect(nmdb.DB, srv)
    db.cache_get("warm-up", None)
    before = scrape(srv)
    for i in range(N):
        assert db.normal_get(f"metrics-never-stored-{i}", "absent") == "absent"
    after = scrape(srv)
    assert moved(before, after, "nmdb_db_get_total") == N
    assert moved(before, after, "nmdb_db_misses_total") == N
    assert latency_count(after, "get", "normal") - latency_count(before, "get", "normal") == N
    assert latency_count(after, "get", "cache") - latency_count(before, "get", "cache") == 0


def test_sync_sets_over_udp_are_timed_in_their_own_mode(srv, connect):
    db = connect(nmdb.SyncDB, srv, "udp")
    before = scrape(srv)
    for i in range(N):
        db.set_sync(f"metrics-sync-{i}", i)
    after = scrape(srv)
    assert moved(before, after, "nmdb_db_set_total") == N
    assert moved(before, after, "nmdb_msg_udp_total") == N
    assert latency_count(after, "set", "sync") - latency_count(before, "set", "sync") == N
    assert latency_count(after, "set", "normal") == latency_count(before, "set", "normal")


def test_sync_sets_of_one_client_take_an_fsync_each_and_its_time_is_counted(srv, connect):
    db = connect(nmdb.SyncDB, srv)
    db.cache_get("warm-up", None)
    before = scrape(srv)
    for i in range(N):
        db.set_sync(f"metrics-fsync-{i}", i)
    after = scrape(srv)
    # A lone client's next write comes after the previous one's answer,
    # so each needs an fsync of its own.
    assert moved(before, after, "nmdb_db_fsyncs_total") == N
    assert moved(before, after, "nmdb_db_fsync_requests_total") == N
    spent = moved(before, after, "nmdb_db_fsync_seconds_total")
    waited = moved(before, after, "nmdb_request_duration_seconds_sum", op="set", mode="sync")
    # Each request was answered after its fsync ended: their latencies
    # hold the fsyncs' time.
    assert 0 < spent <= waited, (spent, waited)


def test_histogram_buckets_are_cumulative_and_end_at_the_count(srv, connect):
    cache = connect(nmdb.Cache, srv)
    for i in range(N):
        cache.cache_set(f"metrics-buckets-{i}", i)
    samples = scrape(srv)
    labels = (("mode", "cache"), ("op", "set"))
    buckets = sorted(
        (float(dict(lbl)["le"]), v)
        for (name, lbl), v in samples.items()
        if name == "nmdb_request_duration_seconds_bucket"
        and tuple(kv for kv in lbl if kv[0] != "le") == labels
    )
    assert buckets[0][0] == 1e-06 and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert counts[-1] == latency_count(samples, "set", "cache") >= N


def test_queue_connection_cache_and_rocksdb_figures_are_present(srv, connect):
    cache = connect(nmdb.Cache, srv)
    for i in range(N):
        cache.cache_set(f"metrics-gauges-{i}", "x" * 100)
    samples = scrape(srv)
    assert value(samples, "nmdb_cache_objects") >= N
    assert value(samples, "nmdb_cache_bytes") >= N * 100
    assert value(samples, "nmdb_cache_capacity_objects") == 128 * 1024
    assert value(samples, "nmdb_tcp_connections") >= 1, "this test's client is connected"
    assert value(samples, "nmdb_tcp_connections_max") == 10000
    assert value(samples, "nmdb_tcp_connections_refused_total") == 0
    assert value(samples, "nmdb_db_queue_requests") >= 0
    assert value(samples, "nmdb_db_queue_bytes") >= 0
    assert value(samples, "nmdb_db_queue_limit_bytes") == 64 << 20
    assert value(samples, "nmdb_db_read_errors_total") == 0
    assert value(samples, "nmdb_db_write_errors_total") == 0
    for name in (
        "nmdb_rocksdb_memtable_bytes",
        "nmdb_rocksdb_pending_compaction_bytes",
        "nmdb_rocksdb_live_data_bytes",
    ):
        assert value(samples, name) >= 0, name
