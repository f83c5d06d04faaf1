"""Thousands of random operations, applied to a server and to a dict.

Each run drives one class over one transport with a fixed seed, on a small
set of keys so that sets, deletes, cas and incr keep meeting each other,
and checks every answer against a local model. The model knows the two
places where nmdb is not a plain dict: DB's asynchronous delete does not
report a missing key, and incr rewrites the stored text (23 right-aligned
characters and a NUL, like the server's C formatting).
"""

import pickle
import random

import pytest

import nmdb

OPERATIONS = 3000
KEYS = 24
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def strtoll(raw):
    """The number in a NUL-terminated value, read as C's strtoll does."""
    text = raw.split(b"\0", 1)[0].lstrip(b" \t\n\v\f\r")
    sign = -1 if text[:1] == b"-" else 1
    if text[:1] in (b"-", b"+"):
        text = text[1:]
    digits = b""
    for c in text:
        if not 48 <= c <= 57:
            break
        digits += bytes([c])
    n = sign * int(digits or b"0")
    return max(INT64_MIN, min(INT64_MAX, n))


def incremented(raw, delta):
    """(new number, new stored bytes) as the server computes them."""
    n = (strtoll(raw) + delta - INT64_MIN) % 2**64 + INT64_MIN
    text = b"%23d\0" % n
    return n, text + raw[len(text) :]


class Model:
    """What the server should hold, as raw (stored) bytes per raw key."""

    def __init__(self, obj):
        self.obj = obj
        self.data = {}

    def raw(self, x):
        return pickle.dumps(x, protocol=5) if self.obj.autopickle else x


def random_value(rng, autopickle):
    if autopickle:
        return rng.choice(
            [
                0,
                "",
                None,
                False,
                (),
                b"",
                rng.randint(-(10**20), 10**20),
                "s" * rng.randint(1, 300),
                (rng.random(), rng.randint(0, 9), "t"),
                bytes(rng.randbytes(rng.randint(0, 2000))),
            ]
        )
    return rng.choice(
        [
            b"",
            b"\0",
            b"5\0",
            b" -12\0",
            b"+7\0",
            b"12abc\0",
            b"abc\0",
            b"99999999999999999999\0",
            b"-99999999999999999999\0",
            b"%d\0" % rng.randint(-(10**6), 10**6),
            b"7" * 30 + b"\0",  # longer than what incr writes
            rng.randbytes(rng.randint(0, 2000)),
        ]
    )


def run(obj, seed, ns, async_delete):
    rng = random.Random(seed)
    model = Model(obj)
    if obj.autopickle:
        keys = [(ns, i) for i in range(KEYS)]
    else:
        keys = [b"%s:%d" % (ns.encode(), i) for i in range(KEYS)]
    counts = dict.fromkeys(["set", "get", "del", "cas", "incr"], 0)

    for step in range(OPERATIONS):
        key = rng.choice(keys)
        rkey = model.raw(key)
        stored = model.data.get(rkey)
        op = rng.choices(list(counts), weights=[4, 4, 2, 2, 2])[0]
        counts[op] += 1
        where = f"step {step}: {op} {key!r}"

        if op == "set":
            value = random_value(rng, obj.autopickle)
            obj[key] = value
            model.data[rkey] = model.raw(value)

        elif op == "get":
            if stored is None:
                with pytest.raises(KeyError):
                    obj[key]
                assert key not in obj, where
            else:
                got = obj[key]
                assert model.raw(got) == stored, where
                assert key in obj, where

        elif op == "del":
            if stored is None and not async_delete:
                with pytest.raises(KeyError):
                    del obj[key]
            else:
                del obj[key]
            model.data.pop(rkey, None)

        elif op == "cas":
            # Half the time the right old value, so swaps do happen.
            if stored is not None and rng.random() < 0.5:
                old = pickle.loads(stored) if obj.autopickle else stored
            else:
                old = random_value(rng, obj.autopickle)
            new = random_value(rng, obj.autopickle)
            if stored is None:
                with pytest.raises(KeyError):
                    obj.cas(key, old, new)
            elif model.raw(old) == stored:
                assert obj.cas(key, old, new) == 2, where
                model.data[rkey] = model.raw(new)
            else:
                assert obj.cas(key, old, new) == 1, where

        else:
            delta = rng.choice([1, -1, rng.randint(-(10**6), 10**6), INT64_MAX])
            if stored is None:
                with pytest.raises(KeyError):
                    obj.incr(key, delta)
            elif not stored.endswith(b"\0"):
                with pytest.raises(TypeError):
                    obj.incr(key, delta)
            else:
                n, model.data[rkey] = incremented(stored, delta)
                assert obj.incr(key, delta) == n, where

    # Every kind of operation ran often enough to matter.
    assert min(counts.values()) > OPERATIONS // 20, counts
    for rkey, stored in model.data.items():
        key = pickle.loads(rkey) if obj.autopickle else rkey
        assert model.raw(obj[key]) == stored


@pytest.mark.parametrize("autopickle", [True, False], ids=["pickled", "bytes"])
@pytest.mark.parametrize("transport", ["tcp", "udp"])
@pytest.mark.parametrize("cls", [nmdb.DB, nmdb.SyncDB, nmdb.Cache], ids=lambda c: c.__name__)
def test_random_operations_agree_with_a_dict(
    cls, transport, autopickle, server, connect, ns, request
):
    obj = connect(cls, server, transport)
    obj.autopickle = autopickle
    # Seeded by the test's name: the same operations on every run.
    run(obj, request.node.name, ns, async_delete=cls is nmdb.DB)
