"""SIGKILL while a set of outputs is being replaced: the next command finds the old set or completes the new one.

Each run is killed at a chosen instant after its journal appears (the files are
watched, not slept on), with a pause between the set's moves so that the kills
land between different moves; then the next reader of the folder must find
every file matching the set's record, with no journal and no temporary left.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY_SPLIT, perturbed, run_script

from fedmnist import files
from fedmnist.comparison import read_comparison
from fedmnist.data import load_initial_weights, load_verified_npz, read_manifest
from fedmnist.files import JOURNAL, PAUSE_VARIABLE
from fedmnist.mnist import sha256_file
from fedmnist.updates import update_filename, write_update

pytestmark = pytest.mark.slow
PAUSE = 0.2  # seconds between two moves of a set, only in these tests


def killed_during_moves(script, args, folder, delay):
    """Run `script`, SIGKILL it `delay` seconds after its journal appears in `folder`; True if the kill landed
    while the journal was still there (a set left half-moved)."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / script), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, PAUSE_VARIABLE: str(PAUSE), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.monotonic() + 300
    while not (folder / JOURNAL).exists():
        assert process.poll() is None, f"{script} ended (rc {process.returncode}) before replacing its set"
        assert time.monotonic() < deadline, f"{script}: no journal within 300 s"
        time.sleep(0.001)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return (folder / JOURNAL).exists()


def no_leftovers(folder):
    return not [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("delay", [0.0, 0.25, 0.55, 0.85, 1.2])
def test_a_split_killed_between_its_moves_is_completed_by_the_next_reader(tmp_path, delay):
    folder = tmp_path / "datos"
    run_script("split_data.py", *TINY_SPLIT, "--out", str(folder), check=True)
    other_seed = [a if a != "7" else "8" for a in TINY_SPLIT]
    mixed = killed_during_moves("split_data.py", [*other_seed, "--out", str(folder), "--replace"], folder, delay)
    assert mixed, "the kill landed after the last move: choose a smaller delay"
    manifest = read_manifest(folder)  # the next command: completes the interrupted set first
    assert manifest["seed"] == 8
    for name in manifest["sha256"]:
        load_verified_npz(folder, name, manifest)  # every file is the new set's
    assert no_leftovers(folder)


@pytest.fixture(scope="module")
def updates(tmp_path_factory):
    """A 5-client split and an update from each client (the initial weights, perturbed), with FedProx twins."""
    root = tmp_path_factory.mktemp("kill")
    data, weights = root / "datos", root / "pesos"
    five = [a if a != "3" else "5" for a in TINY_SPLIT]
    run_script("split_data.py", *five, "--out", str(data), check=True)
    weights.mkdir()
    w0, sha = load_initial_weights(data)
    counts = read_manifest(data)["clients"]
    for cid in range(1, 6):
        for fedprox in (False, True):
            write_update(
                weights / update_filename(cid, fedprox),
                client_id=cid,
                num_samples=counts[str(cid)]["num_samples"],
                weights=perturbed(w0, 1e-3, 10 * fedprox + cid),
                mu=0.01 if fedprox else 0.0,
                epochs=1,
                batch_size=32,
                seed=1,
                initial_weights_sha256=sha,
            )
    return weights, data


@pytest.mark.parametrize("delay", [0.0, 0.5, 1.0, 1.4])
def test_an_aggregation_killed_between_its_moves_is_completed_by_the_next_reader(tmp_path, updates, delay):
    weights, data = updates
    out = tmp_path / "salida"
    common = ["--weights-dir", str(weights), "--data", str(data), "--out", str(out)]
    run_script("global_aggregation.py", *common, check=True)
    mixed = killed_during_moves("global_aggregation.py", [*common, "--trim", "0.1"], out, delay)
    assert mixed, "the kill landed after the last move: choose a smaller delay"
    results = read_comparison(out)  # completes the set, then checks every file against its record
    assert results["config"]["parameters"]["trimmed_mean"]["beta"] == 0.1
    for name, expected in results["files"].items():
        assert sha256_file(out / name) == expected
    assert no_leftovers(out)
    assert json.loads((out / "resultados.json").read_text()) == results


@pytest.mark.parametrize("writer", ["output set", "atomic path"])
def test_a_signal_right_after_a_temporary_is_created_leaves_no_temporary(tmp_path, monkeypatch, writer):
    """SIGTERM's handler raises SystemExit wherever Python is: here, between the temporary's creation and the
    moment its creator returns it. The temporary was recorded before it existed, so the cleanup removes it."""
    real_close, fired = os.close, []

    def close_then_signal(fd):
        real_close(fd)
        if not fired:
            fired.append(fd)
            raise SystemExit(128 + signal.SIGTERM)

    with pytest.raises(SystemExit):
        if writer == "output set":
            with files.OutputSet() as outputs:
                monkeypatch.setattr(files.os, "close", close_then_signal)
                outputs.stage(tmp_path / "resultados.json")
        else:
            monkeypatch.setattr(files.os, "close", close_then_signal)
            with files.atomic_path(tmp_path / "resultados.json"):
                pass
    monkeypatch.undo()
    assert fired and list(tmp_path.iterdir()) == []
