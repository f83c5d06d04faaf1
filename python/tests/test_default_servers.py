"""DB() with no argument: no server until the first operation, then the
default rule (NMDB_SERVERS, else TIPC port 10, else TCP 127.0.0.1:26010)."""

import socket

import pytest

import nmdb
from nmdb import _servers


def refused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_parse_reads_every_kind_of_entry():
    assert _servers.parse(" tcp:127.0.0.1:1, udp:host ,tipc:11,TIPC,sctp:h:9,") == [
        ("tcp", "127.0.0.1", 1),
        ("udp", "host", -1),
        ("tipc", None, 11),
        ("tipc", None, -1),
        ("sctp", "h", 9),
    ]


def test_parse_takes_ipv6_addresses_in_brackets():
    assert _servers.parse("tcp:[::1]:26011,udp:[fe80::1%lo],sctp:[::1]:") == [
        ("tcp", "::1", 26011),
        ("udp", "fe80::1%lo", -1),
        ("sctp", "::1", -1),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "http:host",
        "tcp:",
        "tcp:host:port",
        "tcp:host:70000",
        "tipc:x",
        "udp:h:-1",
        "tcp:[::1",
        "tcp:[]:1",
        "tcp:[::1]x",
    ],
)
def test_parse_rejects_malformed_entries_naming_them(text):
    with pytest.raises(ValueError, match="NMDB_SERVERS"):
        _servers.parse(text)


def test_db_without_argument_adds_no_server_until_used(server, monkeypatch):
    monkeypatch.setenv("NMDB_SERVERS", f"tcp:127.0.0.1:{server.tcp_port}")
    db = nmdb.DB()
    assert db.servers == ()
    db["default"] = 1
    assert db.servers == (f"tcp:127.0.0.1:{server.tcp_port}",)
    assert repr(db) == f"<nmdb.DB: tcp:127.0.0.1:{server.tcp_port}>"
    assert db["default"] == 1


def test_nmdb_servers_adds_every_server_listed(server, start_server, monkeypatch, ns):
    other = start_server()
    monkeypatch.setenv(
        "NMDB_SERVERS",
        f"tcp:127.0.0.1:{server.tcp_port},udp:localhost:{other.udp_port}",
    )
    db = nmdb.SyncDB()
    # The number first: libnmdb (as the original) hashes only the first
    # half of a key to choose its server.
    for i in range(40):
        db[(i, ns)] = i
    assert db.servers == (
        f"tcp:127.0.0.1:{server.tcp_port}",
        f"udp:localhost:{other.udp_port}",
    )
    # Each server got some of the keys.
    for srv, transport in ((server, "tcp"), (other, "udp")):
        alone = nmdb.SyncDB()
        getattr(alone, f"add_{transport}_server")(*srv.address(transport))
        assert any(alone.has_key((i, ns)) for i in range(40)), transport


def test_explicitly_added_server_stops_the_default_rule(server, monkeypatch):
    monkeypatch.setenv("NMDB_SERVERS", f"tcp:127.0.0.1:{refused_port()}")
    db = nmdb.DB()
    db.add_tcp_server(*server.address("tcp"))
    db["explicit"] = 1
    assert db["explicit"] == 1


def test_failed_default_leaves_no_server_and_is_retried(server, monkeypatch):
    bad = refused_port()
    monkeypatch.setenv("NMDB_SERVERS", f"tcp:127.0.0.1:{server.tcp_port},tcp:127.0.0.1:{bad}")
    db = nmdb.DB()
    with pytest.raises(nmdb.NetworkError, match=f"tcp:127.0.0.1:{bad}"):
        db["k"] = 1
    # The first server was not kept alone: keys would land on the wrong one.
    assert db.servers == ()
    monkeypatch.setenv("NMDB_SERVERS", f"tcp:127.0.0.1:{server.tcp_port}")
    db["k"] = 1
    assert db.servers == (f"tcp:127.0.0.1:{server.tcp_port}",)


def test_malformed_nmdb_servers_raises_value_error(monkeypatch):
    monkeypatch.setenv("NMDB_SERVERS", "tcp")
    with pytest.raises(ValueError, match="NMDB_SERVERS"):
        nmdb.DB()["k"]


def test_without_nmdb_servers_tries_tipc_10_then_tcp_26010():
    # What answers depends on the host (TIPC in the kernel, something on
    # port 26010), but the rule and its order do not.
    db = nmdb.Cache()
    db.set_timeout(1000)
    try:
        db.get(("no such key", id(db)))
    except KeyError:
        assert db.servers in (("tipc:10",), ("tcp:127.0.0.1:26010",))
    except nmdb.NetworkError as e:
        if db.servers:
            # TIPC 10 could be added but no server answered there.
            assert db.servers == ("tipc:10",)
        else:
            message = str(e)
            assert "NMDB_SERVERS" in message
            assert message.index("tipc:10") < message.index("tcp:127.0.0.1:26010")
    else:
        pytest.fail("a key nobody stored was found")
