"""A tampered organizer's folder costs one line: each input is built here, and each read refuses it with a
PartitionError naming the file and what is wrong, before anything large is built or allocated."""

import io
import json
import shutil
import struct
import time
import zipfile

import numpy as np
import pytest
from conftest import last_line, run_script

from fedmnist.data import (
    INITIAL_WEIGHTS_FILE,
    MANIFEST,
    TEST_FILE,
    load_client_data,
    load_initial_weights,
    load_test_data,
    npz_bytes,
    read_manifest,
    weights_archive_bytes,
)
from fedmnist.files import os_error_text
from fedmnist.mnist import sha256_file
from fedmnist.partition import PartitionError


@pytest.fixture
def folder(tiny_partition, tmp_path):
    copy = tmp_path / "datos"
    shutil.copytree(tiny_partition, copy)
    return copy


def edit_manifest(folder, change):
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def replace_file(folder, name, data):
    """Put `data` in place of `name` and record its hash in the manifest, as a tamperer who knows the format would."""
    (folder / name).write_bytes(data)
    edit_manifest(folder, lambda m: m["sha256"].__setitem__(name, sha256_file(folder / name)))


def refused(read, folder, *words):
    started = time.perf_counter()
    with pytest.raises(PartitionError) as caught:
        read(folder)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400 and time.perf_counter() - started < 10
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda m: m.pop("seed"), ["seed is not an integer"]),
        (lambda m: m.__setitem__("seed", "tres"), ["seed is not an integer"]),
        (lambda m: m.__setitem__("seed", -1), ["seed is not an integer"]),
        (lambda m: m.__setitem__("num_clients", 10**9), ["num_clients is not an integer in 1..10,000"]),
        (lambda m: m["validation"].__setitem__("num_samples", "many"), ["validation.num_samples"]),
    ],
)
def test_a_manifest_with_a_field_out_of_its_schema_is_named(folder, change, words):
    edit_manifest(folder, change)
    refused(read_manifest, folder, MANIFEST, *words)


@pytest.mark.parametrize(
    "text, kind",
    [("[" * 200_000 + "]" * 200_000, "RecursionError"), ('{"seed": ' + "9" * 5_000 + "}", "ValueError")],
)
def test_a_manifest_too_deep_or_with_a_huge_number_is_a_corrupted_manifest(folder, text, kind):
    (folder / MANIFEST).write_text(text)
    refused(read_manifest, folder, f"corrupted manifest ({kind})")


def test_a_manifest_larger_than_any_split_writes_is_not_read(folder):
    (folder / MANIFEST).write_text(" " * 16_000_001 + "{}")
    refused(read_manifest, folder, "more than any manifest split_data.py writes")


def test_arrays_of_the_wrong_kind_are_named(folder):
    x, y = np.zeros((200, 28, 28), np.uint8), np.zeros(200, np.uint8)
    for arrays, words in [
        ({"x": x}, ["lacks x or y"]),
        ({"x": x, "y": y[:150]}, ["not one integer label per image"]),
        ({"x": x, "y": y + 10}, ["labels outside 0..9"]),
        ({"x": x.astype(np.float64), "y": y}, ["not uint8 images"]),
        ({"x": x[:100], "y": y[:100]}, ["holds 100 images where the manifest says 200"]),
    ]:
        replace_file(folder, TEST_FILE, npz_bytes(**arrays))
        refused(load_test_data, folder, TEST_FILE, *words)


def test_an_object_array_is_refused_without_unpickling_it(folder):
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3, np.uint8))
    replace_file(folder, TEST_FILE, buffer.getvalue())
    refused(load_test_data, folder, "not an archive split_data.py writes", "holds Python objects")


def test_an_archive_declaring_a_gigabyte_is_refused_before_allocating_it(folder):
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000,), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\x00" * 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", member)
        archive.writestr("y.npy", member)
    replace_file(folder, "cliente_1.npz", buffer.getvalue())
    refused(lambda f: load_client_data(f, 1), folder, "declares (1000000000,)", "more than 54,880,000 bytes")


def test_initial_weights_swapped_or_of_another_model_are_named(folder):
    weights, _ = load_initial_weights(folder)
    replace_file(folder, INITIAL_WEIGHTS_FILE, weights_archive_bytes([w + 0.01 for w in weights]))
    refused(load_initial_weights, folder, "do not match the manifest's initial_weights.sha256")
    replace_file(folder, INITIAL_WEIGHTS_FILE, weights_archive_bytes(weights[:-1]))
    refused(load_initial_weights, folder, "not float32 weights of the course's CNN")
    replace_file(folder, INITIAL_WEIGHTS_FILE, weights_archive_bytes([w * np.nan for w in weights]))
    refused(load_initial_weights, folder, "NaN or infinite")


@pytest.mark.slow
def test_a_command_on_a_tampered_folder_prints_one_line_and_exits_non_zero(folder, tmp_path):
    edit_manifest(folder, lambda m: m.__setitem__("num_clients", 10**9))
    done = run_script("experiments/simulation.py", "--data", str(folder), "--rounds", "1", "--out", str(tmp_path / "o"))
    assert done.returncode != 0 and "num_clients is not an integer in 1..10,000" in last_line(done.stderr)
    assert "Traceback" not in done.stderr


def test_an_os_error_is_one_short_line_even_from_h5py():
    h5py_text = (
        "Unable to synchronously create file (file write failed: time = Mon Dec  7, filename = 'x.h5', "
        "errno = 28, error message = 'No space left on device', buf = 0x55d2c1a0a000, total write size = 8)"
    )
    assert os_error_text(OSError(h5py_text)) == "No space left on device"
    assert os_error_text(OSError(28, "No space left on device", "salida/modelo.h5")) == (
        "No space left on device (salida/modelo.h5)"
    )
    assert len(os_error_text(OSError("\x1b[2J" + "x" * 500))) == 160


@pytest.mark.slow
def test_a_scenario_never_re_splits_a_folder_it_was_given(folder, tmp_path):
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    done = run_script(
        "experiments/simulation.py", "--scenario", "curso-iid", "--data", str(folder), "--out", str(tmp_path / "o")
    )
    line = last_line(done.stderr)
    assert done.returncode != 0 and "holds another split (K=3 clients" in line and "leave --data out" in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
