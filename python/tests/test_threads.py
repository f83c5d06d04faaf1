"""One object shared by several threads (the C library allows it)."""

import threading

import pytest

import nmdb

THREADS = 8


def run_together(target):
    """Runs target(i) in THREADS threads released at once; re-raises the
    first error any of them had."""
    start = threading.Barrier(THREADS)
    errors = []

    def body(i):
        try:
            start.wait()
            target(i)
        except BaseException as e:  # reported to the test below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_first_operations_from_many_threads_add_the_default_once(server, monkeypatch, ns):
    monkeypatch.setenv("NMDB_SERVERS", f"tcp:127.0.0.1:{server.tcp_port}")
    db = nmdb.DB()
    run_together(lambda i: db.set((ns, i), i))
    assert db.servers == (f"tcp:127.0.0.1:{server.tcp_port}",)
    assert [db[(ns, i)] for i in range(THREADS)] == list(range(THREADS))


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_threads_sharing_an_object_each_get_their_own_answers(server, connect, ns, transport):
    db = connect(nmdb.Cache, server, transport)

    def work(i):
        for n in range(200):
            db[(ns, i)] = (i, n)
            assert db[(ns, i)] == (i, n)

    run_together(work)
