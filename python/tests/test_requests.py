"""Which request, with which flags, each method sends.

The real server answers a normal and a synchronous SET alike, so the
results alone cannot show that SyncDB really asks for synchronous writes.
A stand-in UDP server records the request code and flags of each message
(protocol.md: bytes 4-5 and 6-7 of the header) and answers just enough for
the call to return.
"""

import socket
import struct
import threading

import pytest

import nmdb

GET, SET, DEL, CAS, INCR = 0x101, 0x102, 0x103, 0x104, 0x105
NORMAL, CACHE_ONLY, SYNC = 0, 1, 2
REP_OK, REP_NOTIN = 0x803, 0x804


class Recorder:
    """A UDP server that records (id, code, flags) and answers every
    request."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.seen = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(65536)
            except OSError:
                return  # closed
            word, code, flags = struct.unpack(">IHH", data[:8])
            self.seen.append((word & 0x0FFFFFFF, code, flags))
            request_id = struct.pack(">I", word & 0x0FFFFFFF)
            if code == GET:
                reply = struct.pack(">I", REP_NOTIN)
            elif code == INCR:
                reply = struct.pack(">IIq", REP_OK, 8, 7)
            else:
                reply = struct.pack(">I", REP_OK)
            self.sock.sendto(request_id + reply, peer)

    def close(self):
        self.sock.close()


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.close()


ARGS = {"get": ("k",), "set": ("k", 1), "delete": ("k",), "cas": ("k", 1, 2), "incr": ("k",)}


def call(obj, method):
    """Calls method with arguments that suit its operation."""
    operation = method.removeprefix("cache_").removeprefix("normal_").removesuffix("_sync")
    try:
        getattr(obj, method)(*ARGS[operation])
    except KeyError:
        pass  # the recorder answers that no key is there


# fmt: off
PLAIN = {
    nmdb.DB: {"get": (GET, NORMAL), "set": (SET, NORMAL), "delete": (DEL, NORMAL),
              "cas": (CAS, NORMAL), "incr": (INCR, NORMAL)},
    nmdb.SyncDB: {"get": (GET, NORMAL), "set": (SET, SYNC), "delete": (DEL, SYNC),
                  "cas": (CAS, NORMAL), "incr": (INCR, NORMAL)},
    nmdb.Cache: {"get": (GET, CACHE_ONLY), "set": (SET, CACHE_ONLY),
                 "delete": (DEL, CACHE_ONLY), "cas": (CAS, CACHE_ONLY),
                 "incr": (INCR, CACHE_ONLY)},
}

EXPLICIT = {
    "cache_get": (GET, CACHE_ONLY), "cache_set": (SET, CACHE_ONLY),
    "cache_delete": (DEL, CACHE_ONLY), "cache_cas": (CAS, CACHE_ONLY),
    "cache_incr": (INCR, CACHE_ONLY),
    "normal_get": (GET, NORMAL), "normal_set": (SET, NORMAL),
    "normal_delete": (DEL, NORMAL), "normal_cas": (CAS, NORMAL),
    "normal_incr": (INCR, NORMAL),
    "set_sync": (SET, SYNC), "delete_sync": (DEL, SYNC),
}
# fmt: on


def sent(recorder):
    """The (code, flags) recorded; a read the library re-sent over UDP (same
    id) is counted once."""
    return list({rid: (code, flags) for rid, code, flags in recorder.seen}.values())


@pytest.mark.parametrize("cls", list(PLAIN), ids=lambda c: c.__name__)
def test_each_class_sends_its_modes_requests(cls, recorder):
    obj = cls()
    obj.add_udp_server(*recorder.sock.getsockname())
    for method, expected in PLAIN[cls].items():
        recorder.seen.clear()
        call(obj, method)
        assert sent(recorder) == [expected], method


@pytest.mark.parametrize("cls", list(PLAIN), ids=lambda c: c.__name__)
def test_explicit_spellings_send_the_same_requests_on_every_class(cls, recorder):
    obj = cls()
    obj.add_udp_server(*recorder.sock.getsockname())
    for method, expected in EXPLICIT.items():
        recorder.seen.clear()
        call(obj, method)
        assert sent(recorder) == [expected], method


def test_dict_forms_use_the_plain_spellings(recorder):
    obj = nmdb.SyncDB()
    obj.add_udp_server(*recorder.sock.getsockname())
    obj["k"] = 1
    del obj["k"]
    assert "k" not in obj
    with pytest.raises(KeyError):
        obj["k"]
    assert sent(recorder) == [(SET, SYNC), (DEL, SYNC), (GET, NORMAL), (GET, NORMAL)]
