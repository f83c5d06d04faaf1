"""nmdb: a dictionary-like client for nmdb cache and database servers.

A thin layer over the C library libnmdb, which does all the talking to the
servers (TIPC, TCP, UDP, SCTP). Example::

    import nmdb
    db = nmdb.DB()            # the default servers, see below
    db['x'] = 1
    db[(1, 2)] = (2, 6)
    print(db['x'], db[(1, 2)])
    del db['x']

Classes, all with the same interface:

- ``DB``: reads from the cache, then the database; asynchronous writes.
- ``SyncDB``: like DB, but writes return once the database applied them.
- ``Cache``: the servers' caches only, never their databases.

Servers: ``add_server(port)`` / ``add_tipc_server(port)``,
``add_tcp_server(addr, port)``, ``add_udp_server(addr, port)``,
``add_sctp_server(addr, port)``; a negative port means the default (TIPC
10, the others 26010). ``DB(port)`` adds the TIPC server ``port`` at once.
If no server was added when the first operation comes, the default servers
are added:

1. those that the ``NMDB_SERVERS`` environment variable lists, as in
   ``NMDB_SERVERS=tcp:127.0.0.1:26010,udp:db2:26010,tipc:11`` (entries
   ``tipc[:PORT]``, ``tcp:HOST[:PORT]``, ``udp:HOST[:PORT]``,
   ``sctp:HOST[:PORT]``);
2. else TIPC port 10, where the C library can add it;
3. else TCP on 127.0.0.1 port 26010.

Keys and values are pickled with protocol 5 (as the original module did
with ``protocol=-1`` on Python 3.8 and later, so both find each other's
data, on the same servers). With ``d.autopickle = False`` they must be
bytes and are stored unchanged. Only read from servers you trust:
unpickling runs code the data names.

Errors: a missing key raises ``KeyError``; an unreachable server, a
timeout or an error answer raises ``NetworkError`` with the C library's
reason; a wrong argument type raises ``TypeError``. Every call gives up
after the C library's timeout (``set_timeout(msec)``, or the
``NMDB_TIMEOUT_MS`` environment variable; 5000 ms by default).

The C library is found through ``NMDB_LIBRARY`` (a full path), else the
dynamic linker and the usual install places (``/usr/local/lib``,
``/usr/lib``); ``import nmdb`` raises ImportError listing what it tried.

One object may be shared between threads: the C library allows it, and
the object guards its own bookkeeping.
"""

from ._db import DB, PICKLE_PROTOCOL, Cache, NetworkError, SyncDB
from ._lib import LIBRARY_PATH

# Shown as nmdb.DB, nmdb.NetworkError, ... in help() and tracebacks.
for _public in (DB, SyncDB, Cache, NetworkError):
    _public.__module__ = __name__
del _public

__all__ = ["DB", "SyncDB", "Cache", "NetworkError", "PICKLE_PROTOCOL", "LIBRARY_PATH"]

__version__ = "0.24.0"
