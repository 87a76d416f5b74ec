"""Hostile update files, built in memory: what a careless or malicious teammate could send the instructor.

Each builder returns the bytes of one `pesos_cliente_N.pkl`. Most are an honest
update with one poisoned part, so a loader that looks only at the fields it needs
would still be fooled. The tests check that every one is rejected with one short
line; `python -m benchmarks.hostile_updates` measures what loading each one costs.
"""

import pickle
import struct

import numpy as np

SHA = "a" * 64
PROTO4 = b"\x80\x04"


def honest(client_id, shapes, num_samples, value=0.5, **extra):
    return {
        "client_id": client_id,
        "num_samples": num_samples,
        "weights": [np.full(s, value, np.float32) for s in shapes],
        "mu": 0.0,
        "epochs": 1,
        "batch_size": 32,
        "seed": 1,
        "initial_weights_sha256": SHA,
        **extra,
    }


class Reduced:
    """Pickles as exactly the given (callable, args[, state]) triple: how a file states what to rebuild."""

    def __init__(self, *reduce_value):
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


def numpy_dtype_with_state(state, code="V8"):
    return Reduced(np.dtype, (code, False, True), state)


def numpy_array_with_state(state):
    return Reduced(np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"), state)


def text(value):
    data = value.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(data)) + data


# -- raw opcode streams ----------------------------------------------------------------------------


def deep_dicts(depth):
    """{'k': {'k': ...}} nested `depth` times."""
    return PROTO4 + b"}" + (text("k") + b"}") * depth + b"s" * depth + b"."


def deep_lists(depth):
    return PROTO4 + b"]" * (depth + 1) + b"a" * depth + b"."


def empty_set_flood(count):
    return PROTO4 + b"\x8f" * count + b"."


def global_named(module, name):
    return b"c" + module.encode("latin1") + b"\n" + name.encode("latin1") + b"\n" + b")R."


def memo_amplified_arrays(raw_bytes, copies):
    """One `raw_bytes`-long buffer, rebuilt into `copies` float32 arrays through the memo."""
    raw = b"\x00" * raw_bytes
    arrays = [numpy_array_with_state((1, (raw_bytes // 4,), np.dtype("f4"), False, raw)) for _ in range(copies)]
    return pickle.dumps(arrays, protocol=4)


def with_dag_field(update, key, levels):
    """`update` with `key` set to a list whose last dict has 2^levels paths.

    It is built without MARKs, so the MARK depth cannot stop it.
    """
    body = pickle.dumps(update, protocol=2)[:-1]  # protocol 2 has no frames: the dict stays on the stack at the end
    memo = lambda i: struct.pack("<I", 100_000 + i)  # noqa: E731 - indices above the ones the honest part used
    nodes = b"}r" + memo(0) + b"a"
    for i in range(1, levels + 1):
        nodes += b"}" + text("a") + b"j" + memo(i - 1) + b"s" + text("b") + b"j" + memo(i - 1) + b"sr" + memo(i) + b"a"
    return body + text(key) + b"]" + nodes + b"s."


def dag(levels, make):
    node = make(None)
    for _ in range(levels):
        node = make(node)
    return node


# -- the catalogue ---------------------------------------------------------------------------------


def crafted_files(shapes, num_samples):
    """{description: bytes} of every hostile file, each claiming to be client 1 of a partition with these counts."""
    n = num_samples
    dump = lambda obj: pickle.dumps(obj, protocol=4)  # noqa: E731
    field = lambda **extra: dump(honest(1, shapes, n, **extra))  # noqa: E731
    out_of_bounds_dtype = (3, "|", None, ("a", "b"), {"a": (np.dtype("f4"), 0), "b": (np.dtype("f4"), 2**40)}, 8, 1, 16)
    return {
        "dtype state with out-of-bounds field offsets (extra key)": field(
            extra=numpy_dtype_with_state(out_of_bounds_dtype)
        ),
        "dtype state with a chosen reference-count address": field(
            extra=numpy_dtype_with_state((3, "|", None, None, None, 0x414141414141, -1, 0x3F))
        ),
        "array state whose data is shorter than its shape": field(
            extra=numpy_array_with_state((1, (10**6,), np.dtype("f4"), False, b""))
        ),
        "object array of 3e8 elements in 95 bytes": field(
            extra=numpy_array_with_state((1, (3 * 10**8,), np.dtype("O"), False, []))
        ),
        "object-dtype weight": dump(honest(1, shapes, n) | {"weights": [np.empty(s, object) for s in shapes]}),
        "100,000-deep dict": deep_dicts(100_000),
        "100,000-deep list": deep_lists(100_000),
        "5,000-digit client_id": dump(honest(10**5000, shapes, n)),
        "num_samples = 10**400": dump(honest(1, shapes, 10**400)),
        "num_samples = 10**9 (one client claims most of the weight)": dump(honest(1, shapes, 10**9)),
        "metadata DAG of 2^64 paths": field(extra=dag(64, lambda child: {"a": child, "b": child})),
        "versions as a DAG of 2^64 paths": field(versions=dag(64, lambda child: {"a": child, "b": child})),
        "versions as a DAG of 2^64 paths without MARKs": with_dag_field(honest(1, shapes, n), "versions", 64),
        "client_id as a list DAG of 2^40 paths": dump(
            honest(1, shapes, n) | {"client_id": dag(40, lambda child: [child, child])}
        ),
        "8 MiB of EMPTY_SET": empty_set_flood(8 << 20),
        "one buffer rebuilt into 1,000 arrays through the memo": memo_amplified_arrays(1 << 20, 1000),
        "global with terminal escape sequences": global_named("os\x1b[2J\x1b[31m", "system\x07"),
        "BUILD on the allowed _frombuffer function": PROTO4
        + b"cnumpy._core.numeric\n_frombuffer\n}"
        + text("__defaults__")
        + b"N"
        + b"sb.",
        "float64 weights of 1e300 (inf in float32)": dump(
            honest(1, shapes, n) | {"weights": [np.full(s, 1e300) for s in shapes]}
        ),
        "no initial_weights_sha256": dump(
            {k: v for k, v in honest(1, shapes, n).items() if k != "initial_weights_sha256"}
        ),
        "bare list of arrays (legacy, not allowed)": dump([np.zeros(s, np.float32) for s in shapes]),
        "mu = inf": field(mu=float("inf")),
        "trailing bytes after STOP": dump(honest(1, shapes, n)) + b"junk",
        "truncated": dump(honest(1, shapes, n))[:-10],
    }


def harmless_extras(shapes, num_samples):
    """Honest updates carrying junk under a key outside the schema: the key is dropped unread, the update accepted."""
    return {
        "metadata DAG of 2^64 paths without MARKs, under an unknown key": with_dag_field(
            honest(1, shapes, num_samples), "extra", 64
        )
    }
