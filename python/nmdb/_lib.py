"""Loading libnmdb and declaring the C prototypes the module calls.

The C library is the one implementation of the nmdb protocol; this module
only finds it and tells ctypes the exact C types of each function, so that
sizes travel as size_t, results come back as ssize_t and INCR's number as
int64_t (ctypes would otherwise assume int everywhere and truncate).

Where the library is looked for, in order:

1. ``NMDB_LIBRARY``: the full path of the library. When it is set, nothing
   else is tried, so a wrong path is reported instead of silently loading
   some other copy.
2. ``ctypes.util.find_library("nmdb")`` (the dynamic linker's cache, which
   ``make install`` followed by ``ldconfig`` fills) and the bare names
   ``libnmdb.so.0`` / ``libnmdb.so`` (the dynamic linker's own search,
   including ``LD_LIBRARY_PATH``).
3. The usual install places: ``/usr/local/lib``, ``/usr/lib``, the
   multiarch and ``lib64`` directories, for when ``ldconfig`` was not run.
"""

import ctypes
import ctypes.util
import os
import sysconfig

LIBRARY_ENV = "NMDB_LIBRARY"


class nmdb_t(ctypes.Structure):
    """The opaque ``nmdb_t`` of ``nmdb.h``; only pointers to it are used."""


HANDLE = ctypes.POINTER(nmdb_t)

# Input buffers are declared c_char_p: ctypes passes a bytes object's own
# memory without copying, and the explicit size argument makes embedded NUL
# bytes harmless. Output buffers are ctypes.create_string_buffer() arrays,
# which c_char_p also accepts.
_BUF = ctypes.c_char_p
_SIZE = ctypes.c_size_t
_SSIZE = ctypes.c_ssize_t
_INT = ctypes.c_int

_KEY = [HANDLE, _BUF, _SIZE]
_KEY_VALUE = _KEY + [_BUF, _SIZE]
_KEY_OLD_NEW = _KEY + [_BUF, _SIZE, _BUF, _SIZE]
_KEY_INCR = _KEY + [ctypes.c_int64, ctypes.POINTER(ctypes.c_int64)]
_INET = [HANDLE, ctypes.c_char_p, _INT]

# name: (restype, argtypes), exactly as include/nmdb.h declares them.
_REQUIRED = {
    "nmdb_init": (HANDLE, []),
    "nmdb_free": (_INT, [HANDLE]),
    "nmdb_add_tipc_server": (_INT, [HANDLE, _INT]),
    "nmdb_add_tcp_server": (_INT, _INET),
    "nmdb_add_udp_server": (_INT, _INET),
    "nmdb_add_sctp_server": (_INT, _INET),
    "nmdb_get": (_SSIZE, _KEY_VALUE),
    "nmdb_cache_get": (_SSIZE, _KEY_VALUE),
    "nmdb_set": (_INT, _KEY_VALUE),
    "nmdb_set_sync": (_INT, _KEY_VALUE),
    "nmdb_cache_set": (_INT, _KEY_VALUE),
    "nmdb_del": (_INT, _KEY),
    "nmdb_del_sync": (_INT, _KEY),
    "nmdb_cache_del": (_INT, _KEY),
    "nmdb_cas": (_INT, _KEY_OLD_NEW),
    "nmdb_cache_cas": (_INT, _KEY_OLD_NEW),
    "nmdb_incr": (_INT, _KEY_INCR),
    "nmdb_cache_incr": (_INT, _KEY_INCR),
    "nmdb_firstkey": (_SSIZE, [HANDLE, _BUF, _SIZE]),
    "nmdb_nextkey": (_SSIZE, [HANDLE, _BUF, _SIZE, _BUF, _SIZE]),
}

# Ours only: the original C library has neither, and the module still runs
# over it (without per-call timeouts and with plainer error messages).
_OPTIONAL = {
    "nmdb_set_timeout": (_INT, [HANDLE, ctypes.c_uint]),
    "nmdb_last_error": (ctypes.c_char_p, []),
}


def _candidates():
    """Names and paths to try when NMDB_LIBRARY is not set, best first."""
    names = []
    found = ctypes.util.find_library("nmdb")
    if found:
        names.append(found)
    names += ["libnmdb.so.0", "libnmdb.so"]
    dirs = ["/usr/local/lib"]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs += ["/usr/local/lib/" + multiarch, "/usr/lib/" + multiarch]
    dirs += ["/usr/lib", "/usr/local/lib64", "/usr/lib64"]
    for d in dirs:
        names += [os.path.join(d, "libnmdb.so.0"), os.path.join(d, "libnmdb.so")]
    # find_library may return a name that is also in the fixed list.
    return list(dict.fromkeys(names))


def _open():
    """Returns the loaded library, or raises ImportError naming every try."""
    path = os.environ.get(LIBRARY_ENV)
    if path:
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            raise ImportError(
                f"nmdb: cannot load the C library from {LIBRARY_ENV}={path!r}: {e}"
            ) from e
    failures = []
    for name in _candidates():
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            failures.append(f"  {e}")
    raise ImportError(
        "nmdb: cannot find the C library libnmdb; install it (make install; "
        f"ldconfig) or set {LIBRARY_ENV} to the full path of libnmdb.so. "
        "Tried:\n" + "\n".join(failures)
    )


def _declare(lib):
    """Sets restype and argtypes of every function the module calls."""
    for name, (restype, argtypes) in _REQUIRED.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"nmdb: {lib._name} has no {name}(); is it really libnmdb?") from None
        fn.restype, fn.argtypes = restype, argtypes
    for name, (restype, argtypes) in _OPTIONAL.items():
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.restype, fn.argtypes = restype, argtypes
    return lib


lib = _declare(_open())

#: The path or name the library was loaded from.
LIBRARY_PATH = lib._name

HAS_TIMEOUT = hasattr(lib, "nmdb_set_timeout")
_HAS_LAST_ERROR = hasattr(lib, "nmdb_last_error")


def last_error():
    """The C library's reason for this thread's latest failed call, or None.

    The reason is kept per thread by libnmdb, and a ctypes call runs on the
    calling thread, so this must be read right after the call that failed,
    on the same thread.
    """
    if not _HAS_LAST_ERROR:
        return None
    reason = lib.nmdb_last_error()
    return reason.decode("utf-8", "replace") if reason else None
