"""IPv6: the module reaches a server listening on ::1 by an IPv6 literal."""

import pytest

import nmdb
from realserver import Server


@pytest.fixture(scope="module")
def server6(nmdb_binary, tmp_path_factory):
    srv = Server(nmdb_binary, tmp_path_factory.mktemp("ipv6"), host="::1").start()
    yield srv
    assert srv.stop() == 0


@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("spelling", ["::1", "[::1]"])
def test_ipv6_literal_reaches_the_server(server6, transport, spelling):
    db = nmdb.DB()
    _, port = server6.address(transport)
    getattr(db, f"add_{transport}_server")(spelling, port)
    key = ("six", transport, spelling)
    db[key] = [6, "over", transport]
    assert db[key] == [6, "over", transport]
    del db[key]
    assert key not in db


def test_nmdb_servers_names_an_ipv6_server_in_brackets(server6, monkeypatch):
    _, port = server6.address("tcp")
    monkeypatch.setenv("NMDB_SERVERS", f"tcp:[::1]:{port}")
    db = nmdb.DB()
    db["six"] = 6
    assert db["six"] == 6
    assert db.servers == (f"tcp:[::1]:{port}",)
