"""The DB, SyncDB and Cache classes over the C library.

Each object owns one ``nmdb_t`` handle. The three classes differ only in
which C functions their plain spellings (``get``, ``set``, ``delete``,
``cas``, ``incr`` and the ``d[k]`` forms) call; every class also has the
explicit ``cache_*``, ``normal_*`` and ``*_sync`` spellings.

Keys and values are pickled with protocol 5 (what the original module's
``protocol=-1`` means on Python 3.8 and later), so both modules store the
same bytes for the same key: the same stored key and the same server.
"""

import ctypes
import operator
import pickle
import threading
import weakref

from . import _servers
from ._lib import HAS_TIMEOUT, last_error, lib

#: The pickle protocol used for keys and values; do not change it, it
#: decides the bytes of every stored key.
PICKLE_PROTOCOL = 5

# No reply can carry more than one protocol message (64 KiB), so a buffer
# this large always holds a whole value or key.
_BUFFER_SIZE = 65536

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT_MAX = 2**32 - 1
_CINT_MIN, _CINT_MAX = -(2**31), 2**31 - 1

# "No default given" for get(); a value no caller can pass.
_MISSING = object()
# A default no caller can pass, so has_key() tells "missing" apart from any
# stored value (None, 0, "") without raising and catching KeyError.
_MISSING_KEY = object()


class NetworkError(Exception):
    """A server could not be reached, did not answer in time, or answered
    with an error; the message says which, in the C library's words."""


def _network_error(what, code):
    reason = last_error() or f"returned {code}"
    return NetworkError(f"nmdb: {what} failed: {reason}")


def _port_number(port):
    port = operator.index(port)
    if not _CINT_MIN <= port <= _CINT_MAX:
        raise ValueError(f"nmdb: port {port} is out of range")
    return port


def _address_bytes(addr):
    if isinstance(addr, str):
        addr = addr.encode("utf-8")
    elif not isinstance(addr, bytes):
        raise TypeError(f"nmdb: the address must be a str, not {type(addr).__name__}")
    if b"\0" in addr:
        raise ValueError("nmdb: the address contains a NUL character")
    return addr


class _Client:
    """What DB, SyncDB and Cache share; see those classes."""

    # The C functions behind the plain spellings; each class sets them.
    _GET = _SET = _DELETE = _CAS = _INCR = None

    def __init__(self, port=None):
        #: When true (the default), keys and values are pickled; when
        #: false, they must be bytes and are stored as they are.
        self.autopickle = True
        # Guards the handle swap and the server count: several threads may
        # share one object, since the C library allows sharing a handle.
        self._lock = threading.Lock()
        # What was added to the handle, as "tcp:host:port" names.
        self._servers = ()
        self._timeout = None
        self._handle = None
        self._finalizer = None
        self._replace_handle(self._new_handle())
        if port is not None:
            self.add_tipc_server(port)

    # --- the handle and its servers -------------------------------------

    def _new_handle(self):
        handle = lib.nmdb_init()
        if not handle:
            raise NetworkError("nmdb: nmdb_init() failed: " + (last_error() or "out of memory"))
        if self._timeout is not None:
            lib.nmdb_set_timeout(handle, self._timeout)
        return handle

    def _replace_handle(self, handle):
        """Makes handle this object's own, freeing the previous one."""
        if self._finalizer is not None:
            self._finalizer()
        self._handle = handle
        # Frees the handle when the object is collected, even if close()
        # is never called.
        self._finalizer = weakref.finalize(self, lib.nmdb_free, handle)

    def _open_handle(self):
        handle = self._handle
        if handle is None:
            raise ValueError("nmdb: operation on a closed object")
        return handle

    @staticmethod
    def _add_to(handle, kind, addr, port):
        """Adds one server to handle, or raises NetworkError saying why."""
        port = _port_number(port)
        if kind == "tipc":
            ok = lib.nmdb_add_tipc_server(handle, port)
        else:
            add = getattr(lib, f"nmdb_add_{kind}_server")
            ok = add(handle, _address_bytes(addr), port)
        if ok != 1:
            name = _servers.describe(kind, addr, port)
            raise _network_error(f"adding the server {name}", ok)

    def _add(self, kind, addr, port):
        with self._lock:
            self._add_to(self._open_handle(), kind, addr, port)
            self._servers += (_servers.describe(kind, addr, port),)

    def _add_default(self):
        """Adds the default servers (see nmdb._servers) to a new handle and
        swaps it in only if all of them were added, so that a failure leaves
        no half-configured object behind."""
        handle = self._new_handle()
        try:
            servers = _servers.from_environment()
            if servers is not None:
                for server in servers:
                    self._add_to(handle, *server)
            else:
                servers = self._first_default(handle)
        except BaseException:
            lib.nmdb_free(handle)
            raise
        self._replace_handle(handle)
        self._servers = tuple(_servers.describe(*server) for server in servers)

    def _first_default(self, handle):
        failures = []
        for server in _servers.FALLBACK:
            try:
                self._add_to(handle, *server)
                return [server]
            except NetworkError as e:
                failures.append(str(e).removeprefix("nmdb: "))
        raise NetworkError(
            f"nmdb: no server was added, {_servers.SERVERS_ENV} is not set, "
            "and no default server could be added: " + "; ".join(failures)
        )

    def _ready(self):
        """The handle to use, with the default servers added if none was."""
        if not self._servers:
            with self._lock:
                self._open_handle()
                if not self._servers:
                    self._add_default()
        return self._open_handle()

    @property
    def servers(self):
        """The servers added so far, as a tuple of names such as
        "tcp:127.0.0.1:26010" or "tipc:11" (defaults filled in)."""
        return self._servers

    def add_server(self, port):
        """Adds the TIPC server with this port (instance) number; the user
        guide's spelling of add_tipc_server(). Raises NetworkError."""
        self._add("tipc", None, port)

    def add_tipc_server(self, port=-1):
        """Adds the TIPC server with this port (instance) number, 10 when
        negative. Raises NetworkError on failure, for example on a host
        without TIPC."""
        self._add("tipc", None, port)

    def add_tcp_server(self, addr, port=-1):
        """Adds and connects to the TCP server at addr (an IPv4 address or
        a host name) and port, 26010 when negative. Raises NetworkError
        on failure, for example when the connection is refused."""
        self._add("tcp", addr, port)

    def add_udp_server(self, addr, port=-1):
        """Adds the UDP server at addr and port (26010 when negative).
        Nothing is sent yet, so only a bad address fails here, with
        NetworkError."""
        self._add("udp", addr, port)

    def add_sctp_server(self, addr, port=-1):
        """Adds the SCTP server at addr and port (26010 when negative).
        Raises NetworkError on failure, for example on a host without
        SCTP."""
        self._add("sctp", addr, port)

    def set_timeout(self, msec):
        """Sets how long one operation may take, in milliseconds, before it
        raises NetworkError; 0 waits forever. The default comes from the C
        library: 5000, or the NMDB_TIMEOUT_MS environment variable. A write
        that timed out may or may not have been applied."""
        msec = operator.index(msec)
        if not 0 <= msec <= _UINT_MAX:
            raise ValueError(f"nmdb: timeout {msec} ms is out of range")
        if not HAS_TIMEOUT:
            raise NotImplementedError(
                "nmdb: the loaded libnmdb has no nmdb_set_timeout() "
                "(the original library waits forever)"
            )
        with self._lock:
            lib.nmdb_set_timeout(self._open_handle(), msec)
            self._timeout = msec

    def close(self):
        """Closes every connection and frees the C handle. Later
        operations raise ValueError; closing twice is harmless. No other
        thread may be using the object at that moment."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._handle = None

    def __enter__(self):
        """``with nmdb.DB() as db:`` closes db at the end of the block."""
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._handle is None else ", ".join(self._servers) or "no server"
        return f"<nmdb.{type(self).__name__}: {state}>"

    # --- pickling -------------------------------------------------------

    def _encode(self, obj, what):
        if self.autopickle:
            try:
                return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)
            except (pickle.PicklingError, TypeError, AttributeError) as e:
                raise TypeError(f"nmdb: the {what} cannot be pickled: {e}") from e
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, (bytearray, memoryview)):
            return bytes(obj)
        raise TypeError(
            f"nmdb: with autopickle off, the {what} must be bytes, not {type(obj).__name__}"
        )

    def _decode(self, raw):
        return pickle.loads(raw) if self.autopickle else raw

    # --- the operations, by C function ----------------------------------

    def _get(self, fn, key, default):
        k = self._encode(key, "key")
        handle = self._ready()
        buf = ctypes.create_string_buffer(_BUFFER_SIZE)
        n = fn(handle, k, len(k), buf, _BUFFER_SIZE)
        if n >= 0:
            return self._decode(ctypes.string_at(buf, n))
        if n == -1:
            if default is _MISSING:
                raise KeyError(key)
            return default
        raise _network_error(fn.__name__, n)

    def _set(self, fn, key, value):
        k = self._encode(key, "key")
        v = self._encode(value, "value")
        r = fn(self._ready(), k, len(k), v, len(v))
        if r != 1:
            raise _network_error(fn.__name__, r)

    def _delete(self, fn, key):
        k = self._encode(key, "key")
        r = fn(self._ready(), k, len(k))
        if r == 0:
            raise KeyError(key)
        if r != 1:
            raise _network_error(fn.__name__, r)

    def _cas(self, fn, key, oldval, newval):
        k = self._encode(key, "key")
        old = self._encode(oldval, "old value")
        new = self._encode(newval, "new value")
        r = fn(self._ready(), k, len(k), old, len(old), new, len(new))
        if r in (1, 2):
            return r
        if r == 0:
            raise KeyError(key)
        raise _network_error(fn.__name__, r)

    def _incr(self, fn, key, increment):
        k = self._encode(key, "key")
        increment = operator.index(increment)
        if not _INT64_MIN <= increment <= _INT64_MAX:
            raise OverflowError(f"nmdb: increment {increment} does not fit in 64 bits")
        newval = ctypes.c_int64()
        r = fn(self._ready(), k, len(k), increment, ctypes.byref(newval))
        if r == 2:
            return newval.value
        if r == 1:
            raise TypeError(f"nmdb: the value of {key!r} is not a NUL-terminated number")
        if r == 0:
            raise KeyError(key)
        raise _network_error(fn.__name__, r)

    # --- the plain spellings: this class's mode ---------------------------

    def get(self, key, default=_MISSING):
        """Returns the value of key. A missing key raises KeyError, unlike
        dict.get, unless a default is given, which is then returned."""
        return self._get(self._GET, key, default)

    def set(self, key, value):
        """Stores value under key (see the class for where it goes)."""
        self._set(self._SET, key, value)

    def delete(self, key):
        """Removes key. Raises KeyError when the server answers that the
        key is not there (DB's asynchronous delete never does)."""
        self._delete(self._DELETE, key)

    def cas(self, key, oldval, newval):
        """Compare and swap: if the value of key is oldval, it becomes
        newval. Returns 2 if swapped, 1 if the value did not match; raises
        KeyError if key is not there. Values compare as pickled bytes."""
        return self._cas(self._CAS, key, oldval, newval)

    def incr(self, key, increment=1):
        """Adds increment (a 64-bit integer) to the number stored under key
        and returns the new number. The value is not pickled: it must be a
        decimal number in text ending in a NUL byte, such as b"5\\0" stored
        with autopickle off; otherwise TypeError. KeyError if key is not
        there. The server rewrites the value as 23 right-aligned characters
        and a NUL."""
        return self._incr(self._INCR, key, increment)

    def has_key(self, key):
        """True if key is there, whatever its value (even 0 or "")."""
        return self._get(self._GET, key, _MISSING_KEY) is not _MISSING_KEY

    def __contains__(self, key):
        """``key in d``: has_key(key)."""
        return self.has_key(key)

    def __getitem__(self, key):
        """``d[key]``: get(key), KeyError when missing."""
        return self._get(self._GET, key, _MISSING)

    def __setitem__(self, key, value):
        """``d[key] = value``: set(key, value)."""
        self._set(self._SET, key, value)

    def __delitem__(self, key):
        """``del d[key]``: delete(key)."""
        self._delete(self._DELETE, key)

    # --- walking the keys -------------------------------------------------

    def _walk_result(self, fn, n, buf):
        if n >= 0:
            return ctypes.string_at(buf, n)
        if n == -1:
            return None
        raise _network_error(fn.__name__, n)

    def _firstkey_raw(self):
        buf = ctypes.create_string_buffer(_BUFFER_SIZE)
        n = lib.nmdb_firstkey(self._ready(), buf, _BUFFER_SIZE)
        return self._walk_result(lib.nmdb_firstkey, n, buf)

    def _nextkey_raw(self, raw):
        buf = ctypes.create_string_buffer(_BUFFER_SIZE)
        n = lib.nmdb_nextkey(self._ready(), raw, len(raw), buf, _BUFFER_SIZE)
        return self._walk_result(lib.nmdb_nextkey, n, buf)

    def firstkey(self):
        """Returns the first key of the server's database, in no promised
        order. Raises KeyError if the database is empty, NetworkError on
        error, including when other than exactly one server was added."""
        raw = self._firstkey_raw()
        if raw is None:
            raise KeyError("nmdb: the database has no keys")
        return self._decode(raw)

    def nextkey(self, key):
        """Returns the key after key in the walk firstkey() started.
        Raises KeyError at the end of the walk."""
        raw = self._nextkey_raw(self._encode(key, "key"))
        if raw is None:
            raise KeyError(key)
        return self._decode(raw)

    def __iter__(self):
        """Walks the keys of the server's database (one server only)."""
        # Walk on the stored bytes: unpickling a key and pickling it again
        # need not give the same bytes, and NEXTKEY needs the exact ones.
        raw = self._firstkey_raw()
        while raw is not None:
            yield self._decode(raw)
            raw = self._nextkey_raw(raw)

    # --- the explicit spellings, the same on every class ------------------

    def cache_get(self, key, default=_MISSING):
        """get() in the cache only."""
        return self._get(lib.nmdb_cache_get, key, default)

    def cache_set(self, key, value):
        """set() in the cache only; the database is not touched."""
        self._set(lib.nmdb_cache_set, key, value)

    def cache_delete(self, key):
        """delete() from the cache only; KeyError if it was not cached."""
        self._delete(lib.nmdb_cache_del, key)

    def cache_cas(self, key, oldval, newval):
        """cas() in the cache only."""
        return self._cas(lib.nmdb_cache_cas, key, oldval, newval)

    def cache_incr(self, key, increment=1):
        """incr() in the cache only."""
        return self._incr(lib.nmdb_cache_incr, key, increment)

    def normal_get(self, key, default=_MISSING):
        """get() from the cache, then the database."""
        return self._get(lib.nmdb_get, key, default)

    def normal_set(self, key, value):
        """set() in the cache and, asynchronously, the database: returns
        once the server queued the write."""
        self._set(lib.nmdb_set, key, value)

    def normal_delete(self, key):
        """delete() from the cache and, asynchronously, the database; a
        missing key is not reported."""
        self._delete(lib.nmdb_del, key)

    def normal_cas(self, key, oldval, newval):
        """cas() against the database."""
        return self._cas(lib.nmdb_cas, key, oldval, newval)

    def normal_incr(self, key, increment=1):
        """incr() against the database."""
        return self._incr(lib.nmdb_incr, key, increment)

    def set_sync(self, key, value):
        """set() in the cache and the database, returning once the database
        stored it."""
        self._set(lib.nmdb_set_sync, key, value)

    def delete_sync(self, key):
        """delete() from the cache and the database, returning once the
        database removed it; KeyError if the database did not have it."""
        self._delete(lib.nmdb_del_sync, key)


class DB(_Client):
    """A dictionary-like client of nmdb servers, backed by their databases.

    Reads look in the cache, then the database; writes and deletes go to the
    cache and are queued for the database (asynchronous: they return before
    the database applied them, and ``del`` of a missing key is not
    reported); cas and incr work on the database.

    ``DB()`` adds no server; if the first operation finds none, the default
    servers are added (see the module's documentation: NMDB_SERVERS, else
    TIPC port 10, else TCP 127.0.0.1:26010). ``DB(port)`` adds the TIPC
    server with that port at once, as ``nmdb.DB(11)`` in the user guide.
    """

    _GET = lib.nmdb_get
    _SET = lib.nmdb_set
    _DELETE = lib.nmdb_del
    _CAS = lib.nmdb_cas
    _INCR = lib.nmdb_incr


class SyncDB(_Client):
    """Like DB, but writes and deletes return only once the database
    applied them, and deleting a missing key raises KeyError."""

    _GET = lib.nmdb_get
    _SET = lib.nmdb_set_sync
    _DELETE = lib.nmdb_del_sync
    _CAS = lib.nmdb_cas
    _INCR = lib.nmdb_incr


class Cache(_Client):
    """Like DB, but every operation works on the servers' caches only,
    never on their databases: a distributed cache, where values may be
    evicted at any time."""

    _GET = lib.nmdb_cache_get
    _SET = lib.nmdb_cache_set
    _DELETE = lib.nmdb_cache_del
    _CAS = lib.nmdb_cache_cas
    _INCR = lib.nmdb_cache_incr
