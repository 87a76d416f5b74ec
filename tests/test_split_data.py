import json
import re
import shutil

import numpy as np
import pytest

from conftest import TINY_SPLIT, last_line, run_script
from fedmnist.data import (
    check_client_id,
    load_client_data,
    load_initial_weights,
    load_test_data,
    load_validation_data,
    read_manifest,
    SplitSpec,
    write_partitions,
)
from fedmnist.files import OutputSet
from fedmnist import partition
from fedmnist.partition import PartitionError, hold_out, make_partition, stratified_subset


@pytest.fixture(scope="module")
def labels(mnist):
    return mnist[1]


@pytest.mark.parametrize("num_clients", [1, 3, 5, 7])
def test_iid_partition_is_disjoint_covering_and_stratified(labels, num_clients):
    parts = make_partition(labels, num_clients, 42, "iid")
    everything = np.concatenate(parts)
    assert len(everything) == len(labels) and len(np.unique(everything)) == len(labels)
    totals = np.bincount(labels, minlength=10)
    for part in parts:
        counts = np.bincount(labels[part], minlength=10)
        assert np.all(np.abs(counts - totals / num_clients) < 1)
        assert abs(len(part) - len(labels) / num_clients) < 1


def test_same_seed_same_split_other_seed_other_split(labels):
    a, b, c = (make_partition(labels, 5, seed, "iid") for seed in (42, 42, 43))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_iid_partition_refuses_impossible_client_counts():
    with pytest.raises(PartitionError, match="K=0"):
        make_partition(np.arange(10) % 10, 0, 1, "iid")
    with pytest.raises(PartitionError, match="K=11"):
        make_partition(np.arange(10) % 10, 11, 1, "iid")


def test_stratified_subset_has_exact_size_and_class_balance(labels):
    subset = stratified_subset(labels, 1000, seed=3)
    assert len(subset) == 1000 == len(np.unique(subset))
    expected = np.bincount(labels, minlength=10) * 1000 / len(labels)
    assert np.all(np.abs(np.bincount(labels[subset], minlength=10) - expected) < 1)


def test_split_writes_verified_partition(tiny_partition):
    manifest = read_manifest(tiny_partition)
    assert manifest["num_clients"] == 3 and manifest["seed"] == 7
    assert sum(c["num_samples"] for c in manifest["clients"].values()) == 550  # 50 of 600 held out
    x, y = load_client_data(tiny_partition, 2)
    assert x.shape == (183, 28, 28, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.bincount(y, minlength=10).tolist() == manifest["clients"]["2"]["class_histogram"]
    x_test, y_test = load_test_data(tiny_partition)
    assert x_test.shape == (200, 28, 28, 1)
    weights, sha = load_initial_weights(tiny_partition)
    assert len(weights) == 10 and sha == manifest["initial_weights"]["sha256"]


def test_the_validation_set_is_held_out_of_every_client(tiny_partition):
    x_validation, y_validation = load_validation_data(tiny_partition)
    manifest = read_manifest(tiny_partition)
    pool = np.sum([c["class_histogram"] for c in manifest["clients"].values()], axis=0) + np.bincount(y_validation)
    assert x_validation.shape == (50, 28, 28, 1)
    assert np.all(np.abs(np.bincount(y_validation, minlength=10) - 50 * pool / 600) <= 1)  # stratified
    clients = {load_client_data(tiny_partition, cid)[0][i].tobytes() for cid in (1, 2, 3) for i in range(183)}
    assert not clients & {image.tobytes() for image in x_validation}


def test_hold_out_is_stratified_seeded_and_disjoint():
    labels = np.repeat(np.arange(10), 120)
    pool, held = hold_out(labels, 1 / 12, seed=3)
    assert len(held) == 100 and np.bincount(labels[held]).tolist() == [10] * 10
    assert sorted([*pool, *held]) == list(range(1200))
    assert np.array_equal(held, hold_out(labels, 1 / 12, seed=3)[1])
    assert not np.array_equal(held, hold_out(labels, 1 / 12, seed=4)[1])


def test_split_is_reproducible(tiny_partition, tmp_path):
    run_script("split_data.py", *TINY_SPLIT, "--out", str(tmp_path), check=True)
    assert json.loads((tmp_path / "manifest.json").read_text())["sha256"] == read_manifest(tiny_partition)["sha256"]


@pytest.mark.parametrize("client_id", [0, 4, -1, "two", 1.5, True, "\u0663", "3\n4"])
def test_client_id_outside_range_is_refused(tiny_partition, client_id):
    with pytest.raises(PartitionError, match="CLIENT_ID"):
        check_client_id(client_id, read_manifest(tiny_partition))


def test_client_id_with_spaces_becomes_the_canonical_int(tiny_partition):
    assert check_client_id(" 3", read_manifest(tiny_partition)) == 3


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{}", "num_clients is not an integer in 1..10,000"),
        ("[]", "not a JSON object"),
        ('{"num_clients": 2, "clients": {"1": {}}}', "one entry for each of 1..2"),
    ],
)
def test_a_manifest_that_split_data_did_not_write_is_one_clear_error(tmp_path, content, problem):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(PartitionError, match=problem):
        read_manifest(tmp_path)


def write_two_clients(folder, x, y):
    """Split 40 images between 2 clients (the first 10 also the test set), keeping `folder`'s initial weights."""
    parts = [np.arange(20), np.arange(20, 40)]
    write_partitions(
        folder, x, y, x[:10], y[:10], parts, load_initial_weights(folder)[0], {"seed": 1, "partition": "iid"}
    )


def test_a_split_that_fails_while_writing_leaves_the_old_one_byte_for_byte(tiny_partition, tmp_path, monkeypatch):
    copy = tmp_path / "p"
    shutil.copytree(tiny_partition, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    calls = []

    def fail_on_the_third_file(self, target, data):
        calls.append(target)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        original(self, target, data)

    original = OutputSet.write_bytes
    monkeypatch.setattr(OutputSet, "write_bytes", fail_on_the_third_file)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (40, 28, 28), dtype=np.uint8), np.arange(40, dtype=np.uint8) % 10
    with pytest.raises(OSError, match="No space"):
        write_two_clients(copy, x, y)
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_a_smaller_split_removes_the_client_files_of_the_larger_one(tiny_partition, tmp_path):
    copy = tmp_path / "p"
    shutil.copytree(tiny_partition, copy)
    x, y = np.zeros((40, 28, 28), np.uint8), np.arange(40, dtype=np.uint8) % 10
    write_two_clients(copy, x, y)
    assert sorted(p.name for p in copy.glob("cliente_*.npz")) == ["cliente_1.npz", "cliente_2.npz"]
    assert read_manifest(copy)["num_clients"] == 2


def test_missing_partition_says_run_split_data_first(tmp_path):
    with pytest.raises(PartitionError, match="run split_data.py first"):
        load_client_data(tmp_path, 1)


def test_corrupted_partition_file_is_refused(tiny_partition, tmp_path):
    copy = tmp_path / "p"
    shutil.copytree(tiny_partition, copy)
    path = copy / "cliente_1.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PartitionError, match="SHA-256"):
        load_client_data(copy, 1)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--clients", "0"], "--clients=0"),
        (["--clients", "70000"], "K=70000"),
        (["--clients", "3", "--train-samples", "2"], "K=3"),
        (["--seed", "-1"], "--seed -1: must be in 0..2^32-1"),
        (["--partition", "dirichlet", "--alpha", "nan"], "--alpha nan: must be a positive number"),
        (["--mnist", "/nonexistent"], "/nonexistent: no such file or folder"),
    ],
)
def test_cli_bad_client_count_is_one_clear_line(tmp_path, args, expected):
    done = run_script("split_data.py", *args, "--out", str(tmp_path / "out"))
    assert done.returncode != 0
    assert expected in last_line(done.stderr) and "Traceback" not in done.stderr


def test_cli_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = run_script("split_data.py", "--out", str(blocker / "sub"))
    assert done.returncode != 0 and "not writable" in last_line(done.stderr) and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "partition, options",
    [("dirichlet", {"alpha": 0.1}), ("dirichlet", {"alpha": 100.0}), ("shards", {"shards_per_client": 2})],
)
def test_non_iid_partitions_are_disjoint_covering_and_reproducible(labels, partition, options):
    parts = make_partition(labels, 10, 42, partition, **options)
    everything = np.concatenate(parts)
    assert len(everything) == len(labels) == len(np.unique(everything))
    assert all(len(part) > 0 for part in parts)
    again = make_partition(labels, 10, 42, partition, **options)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_skew_follows_alpha_and_shards_hold_few_classes(labels):
    def classes_per_client(parts, threshold=0.02):
        return [np.sum(np.bincount(labels[p], minlength=10) > threshold * len(p)) for p in parts]

    assert np.mean(classes_per_client(make_partition(labels, 10, 1, "dirichlet", alpha=0.1))) < 5
    assert np.mean(classes_per_client(make_partition(labels, 10, 1, "dirichlet", alpha=100.0))) == 10
    assert max(classes_per_client(make_partition(labels, 100, 1, "shards", shards_per_client=2), 0.0)) <= 4


def test_impossible_non_iid_requests_are_refused(labels):
    with pytest.raises(PartitionError, match="alpha"):
        make_partition(labels, 5, 1, "dirichlet", alpha=0)
    with pytest.raises(PartitionError, match="no examples"):
        make_partition(labels[:30], 30, 1, "dirichlet", alpha=0.01)
    with pytest.raises(PartitionError, match="shards"):
        make_partition(labels[:10], 10, 1, "shards", shards_per_client=2)


def test_a_folder_holding_another_split_is_refused_in_one_line_and_kept_unless_replace_is_asked(
    tiny_partition, tmp_path
):
    copy = tmp_path / "p"
    shutil.copytree(tiny_partition, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    other = [a if a != "3" else "4" for a in TINY_SPLIT]  # 4 clients where the folder holds 3
    done = run_script("split_data.py", *other, "--out", str(copy))
    line = last_line(done.stderr)
    assert done.returncode != 0 and line.startswith("split_data.py: error: ")
    assert "holds another split (K=3 clients" in line and "not K=4 clients" in line and "--replace" in line
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before
    run_script("split_data.py", *other, "--out", str(copy), "--replace", check=True)
    assert read_manifest(copy)["num_clients"] == 4


def test_a_registered_partition_is_offered_recorded_and_checked(monkeypatch):
    """A new partition is one registry row: its options reach the spec, the manifest's fields and the checks."""

    def halves(labels, num_clients, rng, cut):
        order = rng.permutation(len(labels))
        return [np.sort(part) for part in np.array_split(order, num_clients)]

    row = partition.Partitioner("halves", halves, "test", (partition.Option("cut", int, 2, 1, False, "c", "{value}"),))
    monkeypatch.setitem(partition.REGISTRY, "halves", row)
    spec = SplitSpec.of(num_clients=3, seed=1, partition="halves", cut=4)
    assert spec.manifest_fields(100, 10)["cut"] == 4 and "cut=4" in spec.describe()
    assert sum(map(len, make_partition(np.arange(30) % 10, 3, 1, "halves", cut=4))) == 30
    with pytest.raises(PartitionError, match="--cut 0: must be an integer at least 1"):
        SplitSpec.of(partition="halves", cut=0).partition_options()
    with pytest.raises(PartitionError, match="--alpha: not an option of the halves partition; halves takes --cut"):
        SplitSpec.of(partition="halves", alpha=0.1).partition_options()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"alpha": 10**400}, "--alpha 1000"),
        ({"alpha": float("inf")}, "--alpha inf: must be a positive number"),
        ({"alpha": True}, "--alpha True: must be a positive number"),
        ({"shards_per_client": 10**400}, "shards per client: need K*s <= 100"),
    ],
)
def test_a_hostile_partition_option_costs_one_line(options, message):
    partition_name = "dirichlet" if "alpha" in options else "shards"
    with pytest.raises(PartitionError, match=re.escape(message)) as caught:
        make_partition(np.arange(100) % 10, 5, 1, partition_name, **options)
    assert len(str(caught.value)) < 200
