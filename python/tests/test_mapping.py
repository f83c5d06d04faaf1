"""The dictionary interface and each operation's answers, on every class."""

import pickle

import pytest

import nmdb

CLASSES = [nmdb.DB, nmdb.SyncDB, nmdb.Cache]

FALSY = [0, "", None, False, (), b"", 0.0, [], {}]


@pytest.fixture(
    params=[(cls, t) for cls in CLASSES for t in ("tcp", "udp")],
    ids=lambda p: f"{p[0].__name__}-{p[1]}",
)
def obj(request, server, connect):
    """Each class, over each transport, on the shared server."""
    cls, transport = request.param
    return connect(cls, server, transport)


def test_missing_key_raises_key_error_with_the_key(obj, ns):
    with pytest.raises(KeyError) as e:
        obj[(ns, "missing")]
    assert e.value.args == ((ns, "missing"),)
    with pytest.raises(KeyError):
        obj.get((ns, "missing"))


def test_get_with_a_default_returns_it_for_a_missing_key(obj, ns):
    assert obj.get((ns, "missing"), "dflt") == "dflt"
    assert obj.get((ns, "missing"), None) is None
    obj[(ns, "there")] = 5
    assert obj.get((ns, "there"), "dflt") == 5


@pytest.mark.parametrize("value", FALSY, ids=repr)
def test_in_and_has_key_are_true_for_falsy_stored_values(obj, ns, value):
    # The original module answered False here; a stored key is a stored key.
    obj[ns] = value
    assert ns in obj
    assert obj.has_key(ns)
    assert obj[ns] == value and type(obj[ns]) is type(value)


def test_in_is_false_for_a_missing_key(obj, ns):
    assert ns not in obj
    assert not obj.has_key(ns)


def test_set_replaces_and_delete_removes(obj, ns):
    obj.set(ns, 1)
    obj.set(ns, [1, 2, {"a": (3,)}])
    assert obj.get(ns) == [1, 2, {"a": (3,)}]
    obj.delete(ns)
    assert ns not in obj


def test_delete_of_a_missing_key_raises_key_error_except_on_db(obj, ns):
    if type(obj) is nmdb.DB:
        # The asynchronous delete is queued before anyone looks at the key.
        del obj[ns]
    else:
        with pytest.raises(KeyError):
            del obj[ns]


def test_cas_swaps_on_match_only(obj, ns):
    obj[ns] = "old"
    assert obj.cas(ns, "other", "new") == 1
    assert obj[ns] == "old"
    assert obj.cas(ns, "old", "new") == 2
    assert obj[ns] == "new"


def test_cas_of_a_missing_key_raises_key_error(obj, ns):
    with pytest.raises(KeyError):
        obj.cas(ns, 1, 2)


def test_incr_works_on_nul_terminated_text_and_returns_the_new_value(obj, ns):
    obj.autopickle = False
    key = ns.encode()
    obj[key] = b"5\0"
    assert obj.incr(key) == 6
    assert obj.incr(key, -10) == -4
    assert obj.incr(key, 2**63 - 1) == 2**63 - 5
    # The server keeps the number as C's "%23lld" and a NUL.
    assert obj[key] == b"%23d\0" % (2**63 - 5)


def test_incr_key_is_pickled_but_the_value_is_not(obj, ns):
    obj.autopickle = False
    obj[pickle.dumps(ns, protocol=5)] = b"41\0"
    obj.autopickle = True
    assert obj.incr(ns) == 42


def test_incr_of_a_pickled_value_raises_type_error(obj, ns):
    obj[ns] = 5
    with pytest.raises(TypeError, match="not a NUL-terminated number"):
        obj.incr(ns)


def test_incr_of_text_without_nul_raises_type_error(obj, ns):
    obj.autopickle = False
    obj[ns.encode()] = b"5"
    with pytest.raises(TypeError):
        obj.incr(ns.encode())


def test_incr_of_a_missing_key_raises_key_error(obj, ns):
    with pytest.raises(KeyError):
        obj.incr(ns)


@pytest.mark.parametrize("bad", [1.5, "1", None])
def test_incr_increment_must_be_an_integer(obj, ns, bad):
    with pytest.raises(TypeError):
        obj.incr(ns, bad)


def test_incr_increment_must_fit_in_64_bits(obj, ns):
    with pytest.raises(OverflowError):
        obj.incr(ns, 2**63)


@pytest.mark.parametrize("bad_key, bad_value", [("str", b"v"), (b"k", "str"), (b"k", 5), (5, b"v")])
def test_without_autopickle_keys_and_values_must_be_bytes(obj, bad_key, bad_value):
    obj.autopickle = False
    with pytest.raises(TypeError, match="must be bytes"):
        obj[bad_key] = bad_value


def test_without_autopickle_bytes_are_stored_unchanged(obj, ns):
    obj.autopickle = False
    key = ns.encode() + b"\0\xff"
    obj[key] = bytearray(b"\0raw\xff")
    assert obj[key] == b"\0raw\xff"
    assert key in obj


def test_unpicklable_values_raise_type_error(obj, ns):
    with pytest.raises(TypeError, match="cannot be pickled"):
        obj[ns] = lambda: 0


def test_keys_are_pickled_with_protocol_5(obj, ns):
    # The original module pickles with protocol=-1, which is 5 on Python
    # 3.8+: the same key must be the same stored bytes for both modules.
    obj["x" + ns] = "value"
    obj.autopickle = False
    raw_key = pickle.dumps("x" + ns, protocol=5)
    assert raw_key.startswith(b"\x80\x05")
    assert obj[raw_key] == pickle.dumps("value", protocol=5)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_60000_byte_value_round_trips(server, connect, ns, transport):
    obj = connect(nmdb.DB, server, transport)
    obj.autopickle = False
    value = bytes(range(256)) * 234 + b"end"
    obj[ns.encode()] = value
    assert obj[ns.encode()] == value


def test_a_value_over_the_message_limit_raises_network_error_saying_so(obj, ns):
    with pytest.raises(nmdb.NetworkError, match="limit"):
        obj[ns] = b"x" * 70000


# --- the explicit spellings, on every class -------------------------------


def test_cache_spellings_touch_the_cache(obj, ns):
    obj.cache_set(ns, "c")
    assert obj.cache_get(ns) == "c"
    assert obj.cache_get((ns, 2), "dflt") == "dflt"
    assert obj.cache_cas(ns, "c", "d") == 2
    obj.autopickle = False
    obj.cache_set(ns.encode(), b"1\0")
    assert obj.cache_incr(ns.encode(), 4) == 5
    obj.cache_delete(ns.encode())
    with pytest.raises(KeyError):
        obj.cache_delete(ns.encode())


def test_normal_spellings_go_to_the_database(obj, ns):
    obj.normal_set(ns, "n")
    assert obj.normal_get(ns) == "n"
    assert obj.normal_cas(ns, "n", "m") == 2
    obj.normal_delete(ns)
    obj.normal_delete(ns)  # asynchronous: a missing key is not reported
    obj.autopickle = False
    obj.normal_set(ns.encode(), b"1\0")
    assert obj.normal_incr(ns.encode(), -3) == -2


def test_sync_spellings_report_a_missing_key(obj, ns):
    obj.set_sync(ns, "s")
    assert obj.normal_get(ns) == "s"
    obj.delete_sync(ns)
    with pytest.raises(KeyError):
        obj.delete_sync(ns)


def test_sync_writes_survive_a_restart_and_cache_writes_do_not(fresh_server, connect):
    db = connect(nmdb.SyncDB, fresh_server)
    db["kept"] = 1
    db.cache_set("lost", 2)
    assert "lost" in db
    db.close()
    assert fresh_server.stop() == 0
    fresh_server.start()  # same database, new ports
    db = connect(nmdb.SyncDB, fresh_server)
    assert db["kept"] == 1
    assert "lost" not in db


def test_cache_class_never_writes_the_database(fresh_server, connect):
    cache = connect(nmdb.Cache, fresh_server)
    cache["only in the cache"] = 1
    db = connect(nmdb.SyncDB, fresh_server)
    with pytest.raises(KeyError):
        db.firstkey()
