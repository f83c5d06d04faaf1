"""Unreachable, silent and stopped servers: NetworkError, in time."""

import socket
import time

import pytest

import nmdb

TIMEOUT_MS = 300
# Generous: the machine may be loaded; the C library's default is 5000 ms.
LATE = 3.0


@pytest.fixture
def silent_tcp():
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()


@pytest.fixture
def silent_udp():
    """A UDP port that receives requests and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()


def closed_port():
    """A TCP and UDP port number nothing listens on (just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def elapsed(fn):
    start = time.monotonic()
    with pytest.raises(nmdb.NetworkError) as e:
        fn()
    return time.monotonic() - start, str(e.value)


@pytest.mark.parametrize("cls", [nmdb.DB, nmdb.SyncDB, nmdb.Cache], ids=lambda c: c.__name__)
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_silent_server_raises_network_error_after_the_timeout(
    cls, transport, silent_tcp, silent_udp
):
    db = cls()
    host, port = silent_tcp if transport == "tcp" else silent_udp
    getattr(db, f"add_{transport}_server")(host, port)
    db.set_timeout(TIMEOUT_MS)
    for op in (lambda: db["k"], lambda: db.__setitem__("k", 1), lambda: db.incr("k")):
        took, message = elapsed(op)
        assert TIMEOUT_MS / 1000 * 0.9 <= took < LATE, message
        assert "timed out" in message


def test_timeout_comes_from_nmdb_timeout_ms(monkeypatch, silent_udp):
    monkeypatch.setenv("NMDB_TIMEOUT_MS", str(TIMEOUT_MS))
    db = nmdb.DB()  # nmdb_init() reads the variable
    db.add_udp_server(*silent_udp)
    took, _ = elapsed(lambda: db["k"])
    assert took < LATE


def test_connection_refused_raises_network_error_when_adding():
    db = nmdb.DB()
    with pytest.raises(nmdb.NetworkError, match=r"tcp:127\.0\.0\.1:\d+") as e:
        db.add_tcp_server("127.0.0.1", closed_port())
    assert "refused" in str(e.value).lower()


def test_bad_host_name_raises_network_error():
    with pytest.raises(nmdb.NetworkError):
        nmdb.DB().add_udp_server("no-such-host.invalid", 26010)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_stopped_server_raises_network_error_within_the_timeout(fresh_server, connect, transport):
    db = connect(nmdb.DB, fresh_server, transport)
    db.set_timeout(TIMEOUT_MS)
    db["k"] = 1
    assert fresh_server.stop() == 0
    took, message = elapsed(lambda: db["k"])
    assert took < LATE, message


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_late_reply_after_a_timeout_is_not_taken_for_the_next_answer(
    fresh_server, connect, transport
):
    db = connect(nmdb.SyncDB, fresh_server, transport)
    db.set_timeout(TIMEOUT_MS)
    db["a"] = "old a"
    db["b"] = "b"
    fresh_server.pause()
    try:
        with pytest.raises(nmdb.NetworkError, match="timed out"):
            db["a"]
    finally:
        fresh_server.resume()
    # The server now answers the GET of "a" too; that reply is stale.
    assert db["b"] == "b"
    assert db["a"] == "old a"


def test_tcp_reconnects_after_the_server_restarts_on_the_same_port(fresh_server, connect):
    db = connect(nmdb.SyncDB, fresh_server)
    db["k"] = 1
    assert fresh_server.stop() == 0
    with pytest.raises(nmdb.NetworkError):
        db["k"]
    # The same port again, so the old handle's address is right.
    fresh_server.start(tcp_port=fresh_server.tcp_port)
    assert db["k"] == 1


def test_add_sctp_server_adds_or_says_why_not(server):
    db = nmdb.DB()
    try:
        db.add_sctp_server("127.0.0.1", server.tcp_port)
    except nmdb.NetworkError as e:
        assert f"sctp:127.0.0.1:{server.tcp_port}" in str(e)
        assert db.servers == ()
    else:
        assert db.servers == (f"sctp:127.0.0.1:{server.tcp_port}",)


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_set_timeout_rejects_out_of_range_values(bad):
    with pytest.raises(ValueError):
        nmdb.DB().set_timeout(bad)


def test_set_timeout_rejects_non_integers():
    with pytest.raises(TypeError):
        nmdb.DB().set_timeout(1.5)


def test_closed_object_refuses_operations(server, connect):
    db = connect(nmdb.DB, server)
    db.close()
    db.close()
    with pytest.raises(ValueError, match="closed"):
        db["k"]
    with pytest.raises(ValueError, match="closed"):
        db.add_tcp_server(*server.address("tcp"))
    assert "closed" in repr(db)


def test_context_manager_closes(server):
    with nmdb.DB() as db:
        db.add_tcp_server(*server.address("tcp"))
        db["ctx"] = 1
    with pytest.raises(ValueError):
        db["ctx"]
