"""Rounds by hand: the instructor publishes the next round's weights, teammates train from them, and the comparison
takes only updates of the round it compares (fabricated updates around the real initial weights: no training)."""

import json
import shutil

import numpy as np
import pytest
from conftest import last_line, perturbed, run_script

from fedmnist.aggregation import fedavg
from fedmnist.data import ROUNDS_FILE, SplitSpec, load_initial_weights, read_manifest, split
from fedmnist.mnist import sha256_file
from fedmnist.rounds import RoundError, latest_round, load_round_weights, round_weights_file, start_over
from fedmnist.updates import update_filename, weights_sha256, write_update


@pytest.fixture
def data(tiny_partition, tmp_path):
    """A private copy of the tiny 3-client split: these tests publish rounds into it."""
    return shutil.copytree(tiny_partition, tmp_path / "data")


def write_round(folder, data, round_number, clients, scale=1e-3):
    """Each client's update of `round_number`: its starting weights, perturbed; returns {client: weights}."""
    folder.mkdir(exist_ok=True)
    _, start, sha = load_round_weights(data, round_number)
    counts = read_manifest(data)["clients"]
    written = {}
    for cid in clients:
        written[cid] = perturbed(start, scale, 100 * round_number + cid)
        write_update(
            folder / update_filename(cid),
            client_id=cid,
            num_samples=counts[str(cid)]["num_samples"],
            weights=written[cid],
            mu=0.0,
            epochs=1,
            batch_size=32,
            seed=cid,
            initial_weights_sha256=sha,
            round_number=round_number,
        )
    return written


def aggregate(weights_dir, data, out, *options):
    return run_script(
        "global_aggregation.py", "--weights-dir", str(weights_dir), "--data", str(data), "--out", str(out), *options
    )


def test_before_any_publication_every_round_starts_from_the_initial_weights(data):
    initial, sha = load_initial_weights(data)
    round_number, weights, start_sha = load_round_weights(data)
    assert (round_number, start_sha) == (1, sha)
    assert all(np.array_equal(a, b) for a, b in zip(weights, initial))
    with pytest.raises(RoundError, match=r"ROUND=2: rounds 1\.\.1 are published"):
        load_round_weights(data, 2)


def test_two_rounds_by_hand_publish_fedavg_and_refuse_an_update_of_the_round_before(data, tmp_path):
    updates = write_round(tmp_path / "ronda1", data, 1, (1, 2, 3))
    done = aggregate(tmp_path / "ronda1", data, tmp_path / "out1")
    assert done.returncode == 0, done.stderr
    assert "teammates train with ROUND = 2" in done.stdout

    counts = [read_manifest(data)["clients"][str(c)]["num_samples"] for c in (1, 2, 3)]
    expected = fedavg([(updates[c], n) for c, n in zip((1, 2, 3), counts)])
    round_number, published, sha = load_round_weights(data)
    assert round_number == 2 and sha == weights_sha256(expected)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(published, expected))
    record = json.loads((data / ROUNDS_FILE).read_text())["rounds"][0]
    assert record["file_sha256"] == sha256_file(data / round_weights_file(2))
    assert (record["from_round"], record["method"], record["clients"]) == (1, "fedavg", [1, 2, 3])
    results = json.loads((tmp_path / "out1" / "resultados.json").read_text())
    assert results["round"] == 1 and results["published"]["round"] == 2

    # Round 2: clients 2 and 3 train again from the published weights; client 1 resends its round-1 update.
    shutil.copytree(tmp_path / "ronda1", tmp_path / "ronda2")
    write_round(tmp_path / "ronda2", data, 2, (2, 3))
    done = aggregate(tmp_path / "ronda2", data, tmp_path / "out2")
    assert done.returncode == 0, done.stderr
    assert "pesos_cliente_1.pkl: trained in round 1, but this aggregation is round 2" in done.stdout
    results = json.loads((tmp_path / "out2" / "resultados.json").read_text())
    assert results["round"] == 2 and results["methods"]["fedavg"]["clients"] == [2, 3]
    assert [entry["round"] for entry in results["by_round"]] == [1, 2]
    assert results["by_round"][0]["accuracy"]["fedavg"] == pytest.approx(record["accuracy"]["fedavg"])
    assert (tmp_path / "out2" / "evolucion_rondas.png").is_file()
    assert latest_round(data) == 3


def test_comparing_a_round_again_after_its_successor_was_published_publishes_nothing(data, tmp_path):
    write_round(tmp_path / "ronda1", data, 1, (1, 2, 3))
    assert aggregate(tmp_path / "ronda1", data, tmp_path / "out").returncode == 0
    record = (data / ROUNDS_FILE).read_bytes()
    done = aggregate(tmp_path / "ronda1", data, tmp_path / "out", "--attack", "sign_flip")
    assert done.returncode == 0, done.stderr
    assert "Round 1 is not the latest: nothing published" in done.stdout
    assert (data / ROUNDS_FILE).read_bytes() == record


def truncate_archive(data):
    path = data / round_weights_file(2)
    path.write_bytes(path.read_bytes()[:1000])


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda data: (data / ROUNDS_FILE).write_text("{not json"), "rondas.json: corrupted"),
        (lambda data: (data / ROUNDS_FILE).write_text('{"rounds": 3}'), "not a round record"),
        (truncate_archive, "pesos_ronda_2.npz: missing or not the file rondas.json records"),
    ],
)
def test_a_tampered_round_record_or_archive_costs_one_line(data, tmp_path, tamper, message):
    write_round(tmp_path / "ronda1", data, 1, (1, 2, 3))
    assert aggregate(tmp_path / "ronda1", data, tmp_path / "out").returncode == 0
    data_copy = shutil.copytree(data, tmp_path / "untampered")
    write_round(tmp_path / "ronda2", data_copy, 2, (1, 2, 3))
    tamper(data)
    with pytest.raises(RoundError, match=message):
        load_round_weights(data)
    done = aggregate(tmp_path / "ronda2", data, tmp_path / "out")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert message in last_line(done.stderr)


def test_a_record_from_another_split_is_refused_and_a_new_split_starts_again_at_round_one(data, tmp_path):
    write_round(tmp_path / "ronda1", data, 1, (1, 2, 3))
    assert aggregate(tmp_path / "ronda1", data, tmp_path / "out").returncode == 0
    other = shutil.copytree(data, tmp_path / "other")
    record = json.loads((other / ROUNDS_FILE).read_text())
    (other / ROUNDS_FILE).write_text(json.dumps({**record, "initial_weights_sha256": "0" * 64}))
    with pytest.raises(RoundError, match="other initial weights than this split's"):
        load_round_weights(other)
    manifest = read_manifest(data)
    spec = SplitSpec(num_clients=3, seed=8, train_samples=manifest["train_samples"], test_samples=200)
    split(data, spec, replace=True, log=lambda message: None)
    assert latest_round(data) == 1 and not list(data.glob("pesos_ronda_*.npz"))


def test_the_demo_does_not_discard_rounds_published_by_hand(data, tmp_path):
    write_round(tmp_path / "ronda1", data, 1, (1, 2, 3))
    assert aggregate(tmp_path / "ronda1", data, tmp_path / "out").returncode == 0
    with pytest.raises(RoundError, match="published by hand"):
        start_over(data, keep_others_of="demo.py")
    assert start_over(data) == 1 and latest_round(data) == 1
