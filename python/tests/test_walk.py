"""firstkey, nextkey and iteration over one server's database."""

import pytest

import nmdb


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_iteration_yields_every_database_key_once(fresh_server, connect, transport):
    db = connect(nmdb.SyncDB, fresh_server, transport)
    keys = {("k", i) for i in range(200)} | {"", 0, None, (1, 2)}
    for k in keys:
        db[k] = "v"
    walked = list(db)
    assert len(walked) == len(keys)
    assert set(walked) == keys


def test_firstkey_and_nextkey_walk_to_key_error(fresh_server, connect):
    db = connect(nmdb.SyncDB, fresh_server)
    db["a"] = 1
    db["b"] = 2
    first = db.firstkey()
    second = db.nextkey(first)
    assert {first, second} == {"a", "b"}
    with pytest.raises(KeyError):
        db.nextkey(second)


def test_firstkey_of_an_empty_database_raises_key_error(fresh_server, connect):
    db = connect(nmdb.DB, fresh_server)
    with pytest.raises(KeyError):
        db.firstkey()
    assert list(db) == []


def test_iteration_sees_asynchronous_writes_already_queued(fresh_server, connect):
    db = connect(nmdb.DB, fresh_server)
    for i in range(50):
        db[i] = i
    assert sorted(db) == list(range(50))


def test_iteration_without_autopickle_yields_raw_keys(fresh_server, connect):
    db = connect(nmdb.SyncDB, fresh_server)
    db.autopickle = False
    db[b"\0raw"] = b"1"
    db[b"other"] = b"2"
    assert sorted(db) == [b"\0raw", b"other"]


def test_walking_needs_exactly_one_server(fresh_server, start_server, connect):
    db = connect(nmdb.SyncDB, fresh_server)
    db.add_tcp_server(*start_server().address("tcp"))
    with pytest.raises(nmdb.NetworkError, match="one server"):
        db.firstkey()
    with pytest.raises(nmdb.NetworkError):
        list(db)
