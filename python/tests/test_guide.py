"""The user guide's Python examples, run as written (print is a function).

The guide's setup lines, ``nmdb.DB(11)`` / ``nmdb.Cache(11)`` followed by
``add_server(12)`` and ``add_server(13)``, name three TIPC servers. The
test servers listen on TCP and UDP only (most hosts, this one included,
have no TIPC), so the setup is the one part not run verbatim: the same
three servers are added with add_tcp_server/add_udp_server instead, and
the bodies of the examples run unchanged against them.
"""

import math

import pytest

import nmdb


@pytest.fixture
def three_servers(start_server):
    """The guide assumes three servers (its ports 11, 12 and 13)."""
    return [start_server() for _ in range(3)]


def add_the_three(db, servers):
    """The guide's add_server(11/12/13), over TCP and UDP instead of TIPC."""
    s11, s12, s13 = servers
    db.add_tcp_server(*s11.address("tcp"))
    db.add_udp_server(*s12.address("udp"))
    db.add_tcp_server(*s13.address("tcp"))


def test_quick_start_stores_reads_and_deletes(fresh_server, monkeypatch, capsys):
    # The default server that DB() finds is the test server.
    monkeypatch.setenv("NMDB_SERVERS", f"tcp:127.0.0.1:{fresh_server.tcp_port}")

    import nmdb               # import the module
    db = nmdb.DB()            # connect to the server
    db['x'] = 1               # store some data
    db[(1, 2)] = (2, 6)
    print(db['x'], db[(1, 2)]) # retreive the values
    del db['x']               # delete from the database

    # The guide prints "1 (3, 5)", a typo: it stored (2, 6).
    assert capsys.readouterr().out == "1 (2, 6)\n"
    assert 'x' not in db
    assert db[(1, 2)] == (2, 6)


def test_guide_setup_with_tipc_port_adds_it_or_says_tipc_is_missing():
    # nmdb.DB(11) verbatim: on a host without TIPC the C library cannot add
    # the server, and the failure must be a NetworkError that names it.
    try:
        db = nmdb.DB(11)
    except nmdb.NetworkError as e:
        assert "tipc:11" in str(e)
        assert "TIPC" in str(e)
    else:
        assert db.servers == ("tipc:11",)
        db.close()


def test_has_key_factorial_caches_every_step(three_servers):
    db = nmdb.DB()
    add_the_three(db, three_servers)

    def fact(n):
        if n == 1:
            return 1
        if db.has_key(n):
            return db[n]
        result = n * fact(n - 1)
        db[n] = result
        return result

    assert fact(30) == math.factorial(30)
    for n in range(2, 31):
        assert db[n] == math.factorial(n)
    # A second object, as another program would, finds the stored steps.
    other = nmdb.DB()
    add_the_three(other, three_servers)
    assert other.has_key(30) and other[30] == math.factorial(30)
    assert not other.has_key(31)


def test_shared_memoize_caches_fact_and_tetration(three_servers):
    db = nmdb.Cache()
    add_the_three(db, three_servers)

    def shared_memoize(f):
        def newf(*args, **kwargs):
            key = '%s-%s-%s-%s' % (f.__module__, f.__name__,
                                   repr(args), repr(kwargs))
            if key in db:
                return db[key]
            r = f(*args, **kwargs)
            db[key] = r
            return r
        return newf

    calls = []

    @shared_memoize
    def fact(n):
        calls.append(n)
        if n == 1:
            return 1
        return n * fact(n - 1)

    @shared_memoize
    def tetration(a, b):
        calls.append((a, b))
        if b == 1:
            return a
        return pow(a, tetration(a, b - 1))

    assert fact(20) == math.factorial(20)
    assert tetration(2, 4) == 65536
    assert tetration(3, 3) == 3 ** 27
    # Cached under the guide's key, in the cache, for everyone.
    assert db[f"{__name__}-fact-(20,)-{{}}"] == math.factorial(20)
    assert db[f"{__name__}-tetration-(2, 3)-{{}}"] == 16

    # Called again, nothing is computed: every result comes from nmdb.
    calls.clear()
    assert fact(20) == math.factorial(20)
    assert tetration(3, 3) == 3 ** 27
    assert calls == []
    # Bigger arguments compute only the new step.
    assert fact(22) == math.factorial(22)
    assert calls == [22, 21]
