"""The default servers: what ``DB()`` talks to when no server was added.

The original module's default was TIPC port 10, which most hosts today
cannot reach (no TIPC in the kernel). The rule, applied by the first
operation on an object to which no server was added:

1. ``NMDB_SERVERS``, when set and not empty: a comma-separated list of
   servers, every one of which is added, for example
   ``tcp:127.0.0.1:26010,udp:db2.example.org,tipc:10``. Each entry is
   ``tipc[:PORT]``, ``tcp:HOST[:PORT]``, ``udp:HOST[:PORT]`` or
   ``sctp:HOST[:PORT]``; a missing port means the protocol's default
   (TIPC 10, the others 26010). HOST is an IPv4 address, a host name, or
   an IPv6 address in brackets (``tcp:[::1]:26010``).
2. Otherwise TIPC port 10, if the C library can add it (TIPC is available).
3. Otherwise TCP on 127.0.0.1, port 26010.
"""

import os

SERVERS_ENV = "NMDB_SERVERS"

#: Where the rule ends when neither the variable nor TIPC applies.
FALLBACK = [("tipc", None, -1), ("tcp", "127.0.0.1", -1)]

_INET = ("tcp", "udp", "sctp")
# TIPC instances travel as a C int.
_TIPC_MAX = 2**31 - 1


def _port(text, entry, limit):
    """A port number from NMDB_SERVERS, or ValueError naming the entry."""
    if not (text.isascii() and text.isdigit()) or int(text) > limit:
        raise ValueError(f"{SERVERS_ENV}: bad port in {entry!r}")
    return int(text)


def _host_and_port(text, entry):
    """``HOST[:PORT]`` or ``[IPV6][:PORT]`` split; the port may be empty."""
    if text.startswith("["):
        address, bracket, after = text[1:].partition("]")
        if not bracket or not address or (after and not after.startswith(":")):
            raise ValueError(f"{SERVERS_ENV}: bad IPv6 address in {entry!r}")
        return address, after[1:]
    host, _, port = text.partition(":")
    if not host:
        raise ValueError(f"{SERVERS_ENV}: no host in {entry!r}")
    return host, port


def parse(text):
    """Parses an NMDB_SERVERS value into (kind, address, port) tuples.

    ``address`` is None for TIPC; ``port`` is -1 when the entry gives none.
    Raises ValueError, naming the entry, on anything it cannot read.
    """
    servers = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        kind, _, rest = entry.partition(":")
        kind = kind.lower()
        if kind == "tipc":
            servers.append(("tipc", None, _port(rest, entry, _TIPC_MAX) if rest else -1))
        elif kind in _INET:
            host, port = _host_and_port(rest, entry)
            servers.append((kind, host, _port(port, entry, 65535) if port else -1))
        else:
            raise ValueError(
                f"{SERVERS_ENV}: unknown protocol in {entry!r} (expected tipc, tcp, udp or sctp)"
            )
    return servers


def from_environment():
    """The servers NMDB_SERVERS names, or None when it is unset or empty."""
    text = os.environ.get(SERVERS_ENV, "")
    if not text.strip():
        return None
    servers = parse(text)
    if not servers:
        raise ValueError(f"{SERVERS_ENV} names no server: {text!r}")
    return servers


def describe(kind, address, port):
    """How a server is named in messages, with the defaults filled in."""
    if kind == "tipc":
        return f"tipc:{10 if port < 0 else port}"
    # An IPv6 address in brackets, so that its colons are not the port's.
    if isinstance(address, str) and ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{kind}:{address}:{26010 if port < 0 else port}"
