"""Fixtures: the real nmdb server and clients connected to it.

The tests need the built server and C library. They are found through
NMDB_BIN and NMDB_LIBRARY, else in $CARGO_TARGET_DIR/release or
target/release; when either is missing the run stops with an error that
says where it looked (never a skip).
"""

import itertools
import os

import pytest

from realserver import Server, find_built

_BUILD_HINT = (
    "Build them with `cargo build --release --workspace` (with the same "
    "CARGO_TARGET_DIR), or point NMDB_BIN / NMDB_LIBRARY at them"
)

_binary_key = pytest.StashKey()


def pytest_configure(config):
    library, lib_tried = find_built("NMDB_LIBRARY", "libnmdb.so")
    binary, bin_tried = find_built("NMDB_BIN", "nmdb")
    missing = []
    if library is None:
        missing.append("libnmdb.so, tried: " + ", ".join(lib_tried))
    if binary is None:
        missing.append("the nmdb server, tried: " + ", ".join(bin_tried))
    if missing:
        raise pytest.UsageError(
            "nmdb's Python tests need the built server and library; missing "
            + "; ".join(missing)
            + ". "
            + _BUILD_HINT
        )
    # Before any test module imports nmdb, which loads the library once.
    os.environ["NMDB_LIBRARY"] = str(library)
    # The caller's own settings must not change what the tests talk to or
    # how long they wait; tests that need them set them themselves.
    for name in ("NMDB_SERVERS", "NMDB_TIMEOUT_MS"):
        os.environ.pop(name, None)
    config.stash[_binary_key] = binary


@pytest.fixture(scope="session")
def nmdb_binary(pytestconfig):
    return pytestconfig.stash[_binary_key]


@pytest.fixture(scope="session")
def server(nmdb_binary, tmp_path_factory):
    """One server shared by the tests that keep to their own keys (see ns)."""
    srv = Server(nmdb_binary, tmp_path_factory.mktemp("shared")).start()
    yield srv
    assert srv.stop() == 0, "the shared server did not exit cleanly"


@pytest.fixture
def start_server(nmdb_binary, tmp_path):
    """Starts servers of this test's own; each is stopped, and must exit
    cleanly, at the end of the test."""
    started = []

    def start():
        srv = Server(nmdb_binary, tmp_path / f"server{len(started)}").start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.process is not None:
            assert srv.stop() == 0, f"server in {srv.workdir} did not exit cleanly"


@pytest.fixture
def fresh_server(start_server):
    """A server with an empty database, for tests that look at all keys."""
    return start_server()


@pytest.fixture
def connect():
    """connect(cls, server, transport) -> a cls object with that one server
    added; closed at the end of the test."""

    made = []

    def connect(cls, srv, transport="tcp"):
        obj = cls()
        host, port = srv.address(transport)
        if transport == "tcp":
            obj.add_tcp_server(host, port)
        else:
            obj.add_udp_server(host, port)
        made.append(obj)
        return obj

    yield connect
    for obj in made:
        obj.close()


_namespaces = itertools.count()


@pytest.fixture
def ns(request):
    """A string no other test uses, to build keys on the shared server."""
    return f"{request.node.name}#{next(_namespaces)}"
