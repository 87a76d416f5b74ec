"""The client-update format: round trip, validation, and refusal of hostile pickles."""

import os
import pickle
import subprocess

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedmnist.updates import (
    Expected,
    UpdateError,
    decode_update,
    load_updates,
    read_update,
    scan_update_folder,
    update_filename,
    weights_sha256,
    write_update,
)

TINY_SHAPES = [(3, 2), (2,)]
EXPECTED = Expected(tuple(TINY_SHAPES), {1: 10, 2: 10, 3: 10}, "a" * 64)


def tiny_weights(value=0.5):
    return [np.full(shape, value, np.float32) for shape in TINY_SHAPES]


def tiny_update(client_id=1, weights=None, **overrides):
    update = {
        "client_id": client_id,
        "num_samples": 10,
        "weights": weights or tiny_weights(),
        "mu": 0.0,
        "epochs": 1,
        "batch_size": 32,
        "seed": 1,
        "initial_weights_sha256": "a" * 64,
    }
    update.update(overrides)
    return update


def dump(folder, obj, client_id=1, protocol=4, fedprox=False):
    path = folder / update_filename(client_id, fedprox)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


# --- round trip ---------------------------------------------------------------------------------


def test_write_then_read_round_trip(tmp_path, model_shapes):
    from fedmnist.training import seeded_model

    weights = seeded_model(3).get_weights()
    path = tmp_path / update_filename(4)
    write_update(
        path,
        client_id=4,
        num_samples=123,
        weights=weights,
        mu=0.01,
        epochs=2,
        batch_size=32,
        seed=42,
        initial_weights_sha256=weights_sha256(weights),
    )
    update = read_update(path, Expected(tuple(model_shapes), {4: 123}, weights_sha256(weights)))
    assert update.client_id == 4 and update.num_samples == 123
    assert update.initial_weights_sha256 == weights_sha256(weights)
    assert all(np.array_equal(a, b) for a, b in zip(update.weights, weights))
    assert update.metadata["versions"]["numpy"] == np.__version__


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_of_plain_arrays_is_accepted(tmp_path, protocol):
    update = read_update(dump(tmp_path, tiny_update(), protocol=protocol), EXPECTED)
    assert np.array_equal(update.weights[0], tiny_weights()[0])


def test_numpy_1_pickles_are_accepted(tmp_path):
    data = pickle.dumps(tiny_update(), protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in data
    assert decode_update(data, "numpy1.pkl", EXPECTED, 1).num_samples == 10


def test_fortran_big_endian_and_broadcast_arrays_keep_their_values(tmp_path):
    weights = [np.asfortranarray(np.arange(6, dtype=">f8").reshape(3, 2)), np.broadcast_to(np.float32(2), (2,))]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        update = read_update(dump(tmp_path, tiny_update(weights=weights), protocol=protocol), EXPECTED)
        assert np.array_equal(update.weights[0], np.arange(6).reshape(3, 2)) and update.weights[0].dtype == np.float32


def test_legacy_bare_list_needs_the_option_and_is_weighted_by_the_manifest(tmp_path):
    path = dump(tmp_path, tiny_weights(), client_id=3)
    with pytest.raises(UpdateError, match="--allow-legacy"):
        read_update(path, EXPECTED)
    update = read_update(path, Expected(tuple(TINY_SHAPES), {1: 10, 2: 10, 3: 77}, "a" * 64, allow_legacy=True))
    assert update.client_id == 3 and update.num_samples == 77 and update.initial_weights_sha256 is None


def test_float64_is_cast_to_float32(tmp_path):
    weights = [w.astype(np.float64) for w in tiny_weights()]
    update = read_update(dump(tmp_path, tiny_update(weights=weights)), EXPECTED)
    assert all(w.dtype == np.float32 for w in update.weights)


# --- one specific error per bad input ------------------------------------------------------------


@pytest.mark.parametrize(
    "update, message",
    [
        (tiny_update(weights=[np.full((3, 2), np.nan, np.float32), np.zeros(2, np.float32)]), "NaN or Inf"),
        (tiny_update(weights=[np.zeros((3, 2), np.float32), np.array([np.inf, 0], np.float32)]), "NaN or Inf"),
        (tiny_update(weights=[np.full((3, 2), 1e300), np.zeros(2)]), "NaN or Inf in float32"),
        (tiny_update(weights=[np.zeros((2, 3), np.float32), np.zeros(2, np.float32)]), "shape (2, 3)"),
        (tiny_update(weights=[np.zeros((3, 2), np.float32)]), "1 weight arrays, the model has 2"),
        (tiny_update(weights=[np.zeros((3, 2), object), np.zeros(2, np.float32)]), "only as float32 or float64"),
        (tiny_update(weights=[np.zeros((3, 2), np.int32), np.zeros(2, np.float32)]), "only as float32 or float64"),
        (tiny_update(num_samples=11), "num_samples is 11, but the manifest gives client 1 10 examples"),
        (tiny_update(num_samples=10**9), "num_samples is 1000000000"),
        (tiny_update(num_samples=10.0), "num_samples is 10.0"),
        (tiny_update(client_id=2), "disagrees with the file name"),
        (tiny_update(initial_weights_sha256="b" * 64), "started from other weights"),
        (tiny_update(initial_weights_sha256=None), "initial_weights_sha256 must be 64 hexadecimal digits"),
        (tiny_update(round=2), "trained in round 2, which this data folder has not published"),
        (tiny_update(round="1"), "round must be an integer"),
        (tiny_update(mu=float("nan")), "mu must be a finite number"),
        (tiny_update(epochs=0), "epochs must be an integer"),
        ({"weights": tiny_weights()}, "missing field(s) client_id, num_samples, initial_weights_sha256"),
        ("a string", "expected a dict"),
    ],
)
def test_invalid_content_is_rejected_with_its_reason(tmp_path, update, message):
    with pytest.raises(UpdateError) as caught:
        read_update(dump(tmp_path, update), EXPECTED)
    assert message in str(caught.value) and "pesos_cliente_1.pkl" in str(caught.value)


def test_ids_outside_the_partition_are_rejected(tmp_path):
    for client_id in (0, 99):
        with pytest.raises(UpdateError, match=r"client (0|99) is not in the partition \(clients 1..3\)"):
            decode_update(pickle.dumps(tiny_update(client_id=client_id)), "x.pkl", EXPECTED, None)


def test_unknown_keys_are_dropped(tmp_path):
    update = read_update(dump(tmp_path, tiny_update(extra={"deep": [1, 2]}, note="hi")), EXPECTED)
    assert "extra" not in update.metadata and "note" not in update.metadata and update.metadata["seed"] == 1


def test_truncated_and_empty_files(tmp_path):
    path = dump(tmp_path, tiny_update())
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(UpdateError, match="not a valid update pickle"):
        read_update(path, EXPECTED)
    path.write_bytes(b"")
    with pytest.raises(UpdateError, match="empty file"):
        read_update(path, EXPECTED)


def test_oversized_file_is_refused_after_reading_one_byte_past_the_cap(tmp_path):
    path = dump(tmp_path, tiny_update())
    with pytest.raises(UpdateError, match="cap"):
        read_update(path, EXPECTED, max_bytes=100)


def test_special_files_are_refused_without_blocking(tmp_path):
    (tmp_path / "pesos_cliente_1.pkl").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pesos_cliente_2.pkl")
    (tmp_path / "pesos_cliente_3.pkl").mkdir()
    for cid, kind in ((1, "character device"), (2, "named pipe"), (3, "folder")):
        with pytest.raises(UpdateError, match=f"{kind}, not a regular file"):
            read_update(tmp_path / update_filename(cid), EXPECTED)


def test_symlink_to_a_regular_update_is_read(tmp_path):
    target = dump(tmp_path, tiny_update(), client_id=1)
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "pesos_cliente_1.pkl").symlink_to(target)
    assert read_update(tmp_path / "link" / "pesos_cliente_1.pkl", EXPECTED).client_id == 1


def test_a_second_update_for_the_same_client_is_rejected(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = dump(tmp_path / "a", tiny_update())
    duplicate = dump(tmp_path / "b", tiny_update())
    accepted, rejected = load_updates([first, duplicate], EXPECTED)
    assert [u.path for u in accepted] == [first]
    assert "a second update for client 1" in rejected[0][1]


def test_scan_keeps_canonical_names_and_lists_every_other_entry(tmp_path):
    for cid in (3, 2, 1):
        dump(tmp_path, tiny_update(cid), client_id=cid)
    dump(tmp_path, tiny_update(2), client_id=2, fedprox=True)
    for odd in (
        "pesos_cliente_x.pkl",
        "pesos_cliente_003.pkl",
        "pesos_cliente_\u0663.pkl",
        "pesos_cliente_ 3.pkl",
        "pesos_cliente_4.pkl",
        "pesos_cliente_0.pkl",
        "pesos_cliente_\x1b[31m.pkl",
    ):
        (tmp_path / odd).write_bytes(b"")
    found = scan_update_folder(tmp_path, num_clients=3)
    assert [p.name for p in found.plain] == ["pesos_cliente_1.pkl", "pesos_cliente_2.pkl", "pesos_cliente_3.pkl"]
    assert [p.name for p in found.fedprox] == ["pesos_cliente_2_fedprox.pkl"]
    reasons = {p.name: r for p, r in found.rejected}
    assert len(reasons) == 7
    assert "not an update file name" in reasons["pesos_cliente_003.pkl"]
    assert "client 4 is not in the partition (clients 1..3)" in reasons["pesos_cliente_4.pkl"]
    assert all("\x1b" not in r and "\u0663" not in r for r in reasons.values())


# --- hostile pickles ----------------------------------------------------------------------------


def hostile_payloads(marker):
    target = str(marker)

    class OsSystem:
        def __reduce__(self):
            return os.system, (f"touch {target}",)

    class Subprocess:
        def __reduce__(self):
            return subprocess.call, (["touch", target],)

    class Eval:
        def __reduce__(self):
            return eval, (f"open({target!r}, 'w').close()",)

    class Exec:
        def __reduce__(self):
            return exec, (f"import pathlib; pathlib.Path({target!r}).touch()",)

    return {
        "os.system": OsSystem(),
        "subprocess": Subprocess(),
        "builtins.eval": Eval(),
        "builtins.exec": Exec(),
        "nested object": tiny_update(weights=tiny_weights(), extra={"deep": [OsSystem()]}),
        "inside the weights list": tiny_update(weights=[tiny_weights()[0], Subprocess()]),
    }


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize(
    "kind", ["os.system", "subprocess", "builtins.eval", "builtins.exec", "nested object", "inside the weights list"]
)
def test_hostile_pickles_are_refused_and_never_run(tmp_path, protocol, kind):
    marker = tmp_path / "pwned"
    path = dump(tmp_path, hostile_payloads(marker)[kind], protocol=protocol)
    with pytest.raises(UpdateError, match="refused global"):
        read_update(path, EXPECTED)
    assert not marker.exists()


def test_codecs_encode_is_limited_to_latin1_text():
    # A protocol-2 pickle that asks _codecs.encode for another codec is refused.
    data = pickle.dumps(tiny_update(), protocol=2).replace(b"X\x06\x00\x00\x00latin1", b"X\x06\x00\x00\x00rot_13")
    assert b"rot_13" in data
    with pytest.raises(UpdateError, match="encode is accepted only as encode"):
        decode_update(data, "codec.pkl", EXPECTED, 1)


def test_refusal_names_the_file_and_the_global(tmp_path):
    path = dump(tmp_path, hostile_payloads(tmp_path / "pwned")["os.system"])
    with pytest.raises(UpdateError) as caught:
        read_update(path, EXPECTED)
    message = str(caught.value)
    assert message.startswith(path.name + ":") and str(path.parent) not in message  # the name, not the path
    assert "posix.system" in message or "os.system" in message


# --- fuzzing ------------------------------------------------------------------------------------

VALID = pickle.dumps(tiny_update(), protocol=4)
VALID_LIST = pickle.dumps(tiny_weights(), protocol=2)


def loads_or_update_error(data):
    try:
        decode_update(data, "fuzz.pkl", EXPECTED, name_id=1)
    except UpdateError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_raise_only_update_error(data):
    loads_or_update_error(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([VALID, VALID_LIST]),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    st.integers(min_value=0, max_value=len(VALID)),
)
def test_fuzz_mutated_valid_pickles_raise_only_update_error(valid, mutations, cut):
    data = bytearray(valid)
    for position, value in mutations:
        data[position % len(data)] = value
    before = set(os.listdir("."))
    loads_or_update_error(bytes(data[: cut or None]))
    assert set(os.listdir(".")) == before
