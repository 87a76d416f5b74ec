"""Hostile update files: each is one rejection line, never a crash, a hang, or a takeover."""

import json
import pickle
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.crafted_updates import crafted_files, harmless_extras, honest
from fedmnist.restricted_pickle import MAX_OPCODES
from fedmnist.updates import MAX_REASON_CHARS, Expected, UpdateError, decode_update

SHAPES = [(3, 2), (2,)]
EXPECTED = Expected(tuple(SHAPES), {1: 10, 2: 10}, "a" * 64)
CRAFTED = crafted_files(SHAPES, 10)


@pytest.mark.parametrize("name", CRAFTED)
def test_every_crafted_file_is_one_short_printable_rejection(name):
    with pytest.raises(UpdateError) as caught:
        decode_update(CRAFTED[name], "pesos_cliente_1.pkl", EXPECTED, 1)
    reason = str(caught.value)
    assert reason.startswith("pesos_cliente_1.pkl: ")
    assert len(reason) <= MAX_REASON_CHARS and "\n" not in reason and reason.isprintable() and "\x1b" not in reason


def test_junk_under_an_unknown_key_is_dropped_unread():
    for data in harmless_extras(SHAPES, 10).values():
        update = decode_update(data, "pesos_cliente_1.pkl", EXPECTED, 1)
        assert update.client_id == 1 and "extra" not in update.metadata


def test_the_escape_sequences_of_a_refused_global_are_shown_escaped():
    with pytest.raises(UpdateError) as caught:
        decode_update(CRAFTED["global with terminal escape sequences"], "pesos_cliente_1.pkl", EXPECTED, 1)
    assert "os\\x1b[2J\\x1b[31m.system\\x07" in str(caught.value)


def test_numpy_state_never_reaches_numpy():
    """The dtype states that corrupt memory inside NumPy's __setstate__ are refused before any dtype exists."""
    for name in (
        "dtype state with out-of-bounds field offsets (extra key)",
        "dtype state with a chosen reference-count address",
    ):
        with pytest.raises(UpdateError, match="numpy.dtype is accepted only as float32 or float64"):
            decode_update(CRAFTED[name], "pesos_cliente_1.pkl", EXPECTED, 1)


def test_a_buffer_reused_through_the_memo_cannot_multiply_memory():
    with pytest.raises(UpdateError, match="larger than the file or the model could hold"):
        decode_update(
            CRAFTED["one buffer rebuilt into 1,000 arrays through the memo"], "pesos_cliente_1.pkl", EXPECTED, 1
        )


def test_opcode_count_is_bounded():
    with pytest.raises(UpdateError, match=f"more than {MAX_OPCODES} opcodes"):
        decode_update(CRAFTED["100,000-deep dict"], "pesos_cliente_1.pkl", EXPECTED, 1)


# --- fuzzing inside the accepted subset: every sequence of its opcodes is an update or one UpdateError ------


def short_text(value):
    data = value.encode()
    return b"\x8c" + bytes([len(data)]) + data


FRAGMENTS = [
    b"(",
    b"]",
    b"}",
    b")",
    b"N",
    b"\x88",
    b"\x89",
    b"a",
    b"e",
    b"s",
    b"u",
    b"t",
    b"l",
    b"d",
    b"\x85",
    b"\x86",
    b"\x87",
    b"\x94",
    b"R",
    b"b",
    b"\x93",
    b"K\x00",
    b"K\x01",
    b"K\x03",
    b"J\xff\xff\xff\xff",
    b"G" + struct.pack(">d", 1e300),
    short_text("client_id"),
    short_text("num_samples"),
    short_text("weights"),
    short_text("initial_weights_sha256"),
    short_text("a" * 64),
    short_text("f4"),
    short_text("f8"),
    short_text("<"),
    short_text(">"),
    short_text("C"),
    short_text("numpy"),
    short_text("dtype"),
    short_text("ndarray"),
    short_text("numpy._core.multiarray"),
    short_text("_reconstruct"),
    short_text("numpy._core.numeric"),
    short_text("_frombuffer"),
    short_text("b"),
    b"C\x01b",
    b"C\x18" + b"\x00" * 24,
    b"C\x08" + b"\x00" * 8,
    b"\x96" + struct.pack("<Q", 8) + b"\x00" * 8,
    b"h\x00",
    b"h\x01",
    b"h\x02",
    b"h\x05",
    b"cnumpy\ndtype\n",
    b"cnumpy\nndarray\n",
    b"cnumpy._core.multiarray\n_reconstruct\n",
    b"c_codecs\nencode\n",
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60))
def test_fuzz_sequences_of_accepted_opcodes_raise_only_update_error(fragments):
    data = b"\x80\x04" + b"".join(fragments) + b"."
    try:
        decode_update(data, "fuzz.pkl", EXPECTED, 1)
    except UpdateError as err:
        assert len(str(err)) <= MAX_REASON_CHARS


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 5), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6))
def test_fuzz_mutated_honest_updates_at_every_protocol(protocol, mutations):
    data = bytearray(pickle.dumps(honest(1, SHAPES, 10, initial_weights_sha256="a" * 64), protocol=protocol))
    for position, value in mutations:
        data[position % len(data)] = value
    try:
        decode_update(bytes(data), "fuzz.pkl", EXPECTED, 1)
    except UpdateError as err:
        assert len(str(err)) <= MAX_REASON_CHARS


def test_the_security_pages_loader_figures_are_the_codes(model_shapes):
    """docs/seguridad.md quotes the opcode bound, the MARK bound and an honest update's opcode count;
    its table's largest crafted file sits one byte under the file cap, as the page says."""
    import pickletools

    from conftest import REPO
    from fedmnist.restricted_pickle import MAX_MARK_DEPTH

    page = (REPO / "docs" / "seguridad.md").read_text()
    most_opcodes = max(
        sum(1 for _ in pickletools.genops(pickle.dumps(honest(1, model_shapes, 10), protocol=p))) for p in range(6)
    )
    cap = Expected(tuple(model_shapes), {1: 10}, "a" * 64).max_file_bytes
    assert f"a lo sumo {MAX_OPCODES:,} códigos de operación".replace(",", " ") in page
    assert f"una actualización honesta usa unos {round(most_opcodes, -1)})" in page
    assert f"{MAX_MARK_DEPTH}\n  MARK anidados" in page
    bench = json.loads((REPO / "results" / "benchmarks.json").read_text())["hostile_updates"]
    assert bench["file_cap_bytes"] == cap
    assert {row["file"]: row["bytes"] for row in bench["files"]}["EMPTY_SET up to the cap"] == cap - 1
    assert "«EMPTY_SET up to the cap»" in page