"""The copy that man nmdb(1) gives for moving data from the original
server, run as printed: every key of one server lands in another."""

import pathlib
import re

import nmdb

MAN_PAGE = pathlib.Path(__file__).resolve().parents[2] / "man" / "nmdb.1"


def copy_snippet():
    """The Python lines of the MOVING FROM THE ORIGINAL section."""
    page = MAN_PAGE.read_text()
    section = page.split(".SH MOVING FROM THE ORIGINAL", 1)[1].split(".SH ", 1)[0]
    block = re.search(r"^\.nf\n\.RS\n(.*?)^\.RE\n\.fi", section, re.S | re.M)
    assert block, "no example in the section"
    return block.group(1)


def test_the_man_pages_copy_moves_every_key_to_the_new_server(start_server):
    old_server, new_server = start_server(), start_server()
    source = nmdb.SyncDB()
    source.add_tcp_server(*old_server.address("tcp"))
    for i in range(300):
        source[("k", i)] = {"v": i}
    source.autopickle = False
    source[b"raw\0key"] = b"\0\1" * 30000
    source.close()

    ports = iter([old_server.address("tcp")[1], new_server.address("tcp")[1]])
    snippet = re.sub(r"\b26010\b|\b26011\b", lambda _: str(next(ports)), copy_snippet())
    assert next(ports, None) is None, "the example names two servers"
    exec(compile(snippet, str(MAN_PAGE), "exec"), {})

    copy = nmdb.SyncDB()
    copy.add_tcp_server(*new_server.address("tcp"))
    assert all(copy[("k", i)] == {"v": i} for i in range(300))
    copy.autopickle = False
    assert len(list(copy)) == 301
    assert copy[b"raw\0key"] == b"\0\1" * 30000
    copy.close()
