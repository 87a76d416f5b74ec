"""The instructor's CLI on fabricated updates around the real initial weights (no training needed)."""

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from conftest import REPO, last_line, perturbed, run_script

from benchmarks.crafted_updates import crafted_files
from fedmnist import privacy
from fedmnist.aggregation import fedavg
from fedmnist.comparison import ComparisonError, read_comparison
from fedmnist.data import load_initial_weights, read_manifest
from fedmnist.updates import Expected, read_update, update_filename, write_update
from model import weight_shapes


def write_client(folder, client_id, weights, sha, num_samples, fedprox=False):
    write_update(
        folder / update_filename(client_id, fedprox),
        client_id=client_id,
        num_samples=num_samples,
        weights=weights,
        mu=0.01 if fedprox else 0.0,
        epochs=1,
        batch_size=32,
        seed=1,
        initial_weights_sha256=sha,
    )


@pytest.fixture(scope="module")
def partition(tmp_path_factory):
    """A real-MNIST partition for 5 clients (Krum with f = 1 needs more than 3)."""
    out = tmp_path_factory.mktemp("partition5")
    run_script(
        "split_data.py",
        "--clients",
        "5",
        "--seed",
        "7",
        "--out",
        str(out),
        "--train-samples",
        "500",
        "--test-samples",
        "200",
        check=True,
    )
    return out


def aggregate(weights_dir, data, out, *options, check=False):
    """Run the instructor's CLI on one folder of updates, as the course does."""
    options = ("--weights-dir", str(weights_dir), "--data", str(data), "--out", str(out), *options)
    return run_script("global_aggregation.py", *options, check=check)


def count(partition, client_id):
    return read_manifest(partition)["clients"][str(client_id)]["num_samples"]


@pytest.fixture(scope="module")
def client_dir(partition, tmp_path_factory):
    """Four honest updates (each with a _fedprox twin) and one whose shapes do not match the model."""
    folder = tmp_path_factory.mktemp("clients")
    w0, sha = load_initial_weights(partition)
    for cid in (1, 2, 3, 4):
        write_client(folder, cid, perturbed(w0, 1e-3, cid), sha, num_samples=count(partition, cid))
        write_client(folder, cid, perturbed(w0, 1e-3, 10 + cid), sha, num_samples=count(partition, cid), fedprox=True)
    bad = perturbed(w0, 1e-3, 5)
    bad[6] = bad[6][:100]  # wrong Dense kernel shape
    (folder / update_filename(5)).write_bytes(
        pickle.dumps(
            {"client_id": 5, "num_samples": count(partition, 5), "weights": bad, "initial_weights_sha256": sha}
        )
    )
    return folder


@pytest.fixture(scope="module")
def aggregated(client_dir, partition, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    done = aggregate(client_dir, partition, out, check=True)
    return out, done.stdout


def test_writes_every_output_and_names_the_best(aggregated):
    out, stdout = aggregated
    results = json.loads((out / "resultados.json").read_text())
    for key in ("fedavg", "fedprox", "fedmed", "trimmed_mean", "krum"):
        assert results["methods"][key]["status"] == "ok", key
        assert (out / f"modelo_global_{key}.h5").stat().st_size > 1_000_000
    assert (out / "comparacion_metodos.png").stat().st_size > 10_000
    assert "dpfedavg" not in results["methods"]  # DP's rows only when asked (--private)
    assert set(results["local_models"]) == {"1", "2", "3", "4"}
    assert set(results["tied_with_best_on_test"]) <= set(results["methods"]) - {results["best_method"]}
    assert results["methods"]["krum"]["returned_client"] in (1, 2, 3, 4)
    assert results["best_method"] in results["methods"]
    assert "Best method on validation:" in stdout


def test_the_set_records_the_hash_of_each_of_its_files_and_a_swapped_file_is_named(aggregated, tmp_path):
    out, _ = aggregated
    results = read_comparison(out)
    assert set(results["files"]) >= {"modelo_global_fedavg.h5", "comparacion_metodos.png"}
    copy = tmp_path / "copia"
    shutil.copytree(out, copy)
    shutil.copy(copy / "modelo_global_fedmed.h5", copy / "modelo_global_fedavg.h5")  # a model from elsewhere
    with pytest.raises(ComparisonError, match="modelo_global_fedavg.h5: does not match the resultados.json"):
        read_comparison(copy)


def test_dp_rows_run_when_asked_with_their_epsilon(client_dir, partition, tmp_path):
    aggregate(client_dir, partition, tmp_path, "--private", check=True)
    results = json.loads((tmp_path / "resultados.json").read_text())
    spent = results["methods"]["dpfedavg"]["privacy"]  # every client in the one round: q = 1, z = 1 by default
    assert spent["epsilon"] == pytest.approx(privacy.epsilon(1.0, 1.0, 1, spent["delta"]))
    # σ_b = 0.05 per client is too little count noise for z = 1 with 4 clients: the status says so
    assert "clipped-count noise above 0.5" in results["methods"]["dpfedavg_adaptive"]["status"]


def test_a_non_finite_aggregate_is_a_failure_and_no_model_is_written(client_dir, partition, tmp_path):
    out = tmp_path / "out"
    aggregate(client_dir, partition, out, "--private", "--dp-clip", "1e308", check=True)
    results = json.loads((out / "resultados.json").read_text())
    assert results["methods"]["dpfedavg"]["status"].startswith("failed: the aggregate has 390,410 non-finite values")
    assert not (out / "modelo_global_dpfedavg.h5").exists() and (out / "modelo_global_fedavg.h5").exists()


def test_rejected_update_is_listed_and_skipped(aggregated):
    out, stdout = aggregated
    results = json.loads((out / "resultados.json").read_text())
    assert [r["file"] for r in results["rejected"]] == ["pesos_cliente_5.pkl"]
    assert "shape (100, 256)" in results["rejected"][0]["reason"]
    assert any(line.startswith("REJECTED") and "pesos_cliente_5.pkl" in line for line in stdout.splitlines())
    assert results["methods"]["fedavg"]["clients"] == [1, 2, 3, 4]


def test_saved_fedavg_model_is_the_weighted_mean(aggregated, client_dir, partition):
    expected = Expected.from_manifest(read_manifest(partition), weight_shapes())
    updates = [read_update(client_dir / update_filename(cid), expected) for cid in (1, 2, 3, 4)]
    expected = fedavg((u.weights, u.num_samples) for u in updates)
    saved = keras.saving.load_model(aggregated[0] / "modelo_global_fedavg.h5", compile=False).get_weights()
    assert all(np.allclose(a, b, atol=1e-7) for a, b in zip(saved, expected))


def test_empty_weights_folder_is_one_clear_line(tmp_path, partition):
    done = aggregate(tmp_path, partition, tmp_path)
    assert done.returncode != 0
    assert "no pesos_cliente_<id>.pkl for clients 1..5" in last_line(done.stderr) and "Traceback" not in done.stderr


def test_missing_partition_says_run_split_data_first(client_dir, tmp_path):
    done = aggregate(client_dir, tmp_path / "none", tmp_path)
    assert (
        done.returncode != 0 and "run split_data.py first" in last_line(done.stderr) and "Traceback" not in done.stderr
    )


def test_too_few_valid_clients_leaves_earlier_outputs_untouched(tmp_path, partition):
    w0, sha = load_initial_weights(partition)
    write_client(tmp_path, 1, perturbed(w0, 1e-3, 1), sha, count(partition, 1))
    write_client(tmp_path, 2, [np.full_like(w, np.nan) for w in w0], sha, count(partition, 2))
    earlier = tmp_path / "resultados.json"
    earlier.write_text('{"earlier": true}')
    done = aggregate(tmp_path, partition, tmp_path)
    assert done.returncode != 0
    assert "only 1 valid client update(s)" in last_line(done.stderr) and "NaN" in done.stdout
    assert earlier.read_text() == '{"earlier": true}'
    assert not list(tmp_path.glob("modelo_global_*.h5")) and not list(tmp_path.glob(".*"))


def test_simulated_nan_attack_is_caught_by_validation(client_dir, partition, tmp_path):
    done = aggregate(client_dir, partition, tmp_path, "--attack", "nan", "--malicious", "1", check=True)
    results = json.loads((tmp_path / "resultados.json").read_text())
    assert results["config"]["malicious_clients"] == [1]
    rejected = {r["file"]: r["reason"] for r in results["rejected"]}
    assert "NaN" in rejected["pesos_cliente_1.pkl"] and "NaN" in rejected["pesos_cliente_1_fedprox.pkl"]
    assert str(client_dir) not in json.dumps(results["rejected"])  # names, never the instructor's absolute paths
    assert results["methods"]["fedavg"]["clients"] == [2, 3, 4]
    assert "SIMULATED ATTACK: nan on clients [1]" in done.stdout


def test_more_attackers_than_clients_is_one_clear_line(client_dir, partition, tmp_path):
    done = aggregate(client_dir, partition, tmp_path, "--attack", "scale", "--malicious", "9")
    assert done.returncode != 0 and "--malicious 9" in last_line(done.stderr) and "Traceback" not in done.stderr


# --- hostile folders ----------------------------------------------------------------------------------


def snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def hostile_run(partition, tmp_path_factory):
    """Three honest clients, then every crafted file and odd name the issue lists, in one folder."""
    folder, out = tmp_path_factory.mktemp("hostile"), tmp_path_factory.mktemp("hostile_out")
    w0, sha = load_initial_weights(partition)
    for cid in (2, 3, 4):
        write_client(folder, cid, perturbed(w0, 1e-3, cid), sha, count(partition, cid))
    crafted = crafted_files(weight_shapes(), count(partition, 1))
    names = {}
    for i, (label, data) in enumerate(crafted.items()):
        # only the first name is canonical; the rest are rejected by their name
        name = f"pesos_cliente_{'1' if i == 0 else '0' * i + '1'}.pkl"
        (folder / name).write_bytes(data)
        names[name] = label
    (folder / "pesos_cliente_5.pkl").symlink_to("/dev/zero")
    os.mkfifo(folder / "pesos_cliente_1_fedprox.pkl")
    (folder / "pesos_cliente_\u0663.pkl").write_bytes(crafted["truncated"])
    (folder / "pesos_cliente_ 3.pkl").write_bytes(crafted["truncated"])
    (folder / "pesos_cliente_9.pkl").write_bytes(crafted["truncated"])
    done = aggregate(folder, partition, out)
    return done, json.loads((out / "resultados.json").read_text()) if done.returncode == 0 else None


def test_hostile_folder_rejects_every_bad_entry_and_aggregates_the_honest(hostile_run):
    done, results = hostile_run
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert results["methods"]["fedavg"]["clients"] == [2, 3, 4]
    rejected = {r["file"]: r["reason"] for r in results["rejected"]}
    assert "pesos_cliente_1.pkl" in rejected and "numpy.dtype is accepted only" in rejected["pesos_cliente_1.pkl"]
    assert "pesos_cliente_01.pkl" in rejected and "not an update file name" in rejected["pesos_cliente_01.pkl"]
    assert (
        "character device" in rejected["pesos_cliente_5.pkl"]
        and "named pipe" in rejected["pesos_cliente_1_fedprox.pkl"]
    )
    assert "client 9 is not in the partition" in rejected["pesos_cliente_9.pkl"]
    assert "pesos_cliente_ 3.pkl" in rejected and "pesos_cliente_\\u0663.pkl" in rejected
    assert all(len(reason) <= 300 and reason.isprintable() for reason in rejected.values())


def test_a_failed_run_leaves_every_earlier_output_byte_for_byte(aggregated, partition, tmp_path):
    out, _ = aggregated
    before = snapshot(out)
    folder = tmp_path / "clients"
    folder.mkdir()
    w0, sha = load_initial_weights(partition)
    write_client(folder, 1, perturbed(w0, 1e-3, 1), sha, count(partition, 1))
    done = aggregate(folder, partition, out)
    assert done.returncode != 0 and "earlier outputs" in last_line(done.stderr)
    assert snapshot(out) == before and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_method_not_computed_loses_its_old_model(client_dir, partition, tmp_path):
    out = tmp_path / "out"
    aggregate(client_dir, partition, out, check=True)
    assert (out / "modelo_global_krum.h5").exists()
    aggregate(client_dir, partition, out, "--krum-f", "3", check=True)
    results = json.loads((out / "resultados.json").read_text())
    assert results["methods"]["krum"]["status"].startswith("not computed: Krum needs K > f + 2")
    assert not (out / "modelo_global_krum.h5").exists()
    assert oct((out / "resultados.json").stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sigterm_while_writing_leaves_earlier_outputs_and_no_temporary(aggregated, client_dir, partition, tmp_path):
    out = tmp_path / "out"
    aggregate(client_dir, partition, out, check=True)
    before = snapshot(out)
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "global_aggregation.py"),
            "--weights-dir",
            str(client_dir),
            "--data",
            str(partition),
            "--out",
            str(out),
            "--trim",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.monotonic() + 300
    while not any(p.name.startswith(".") for p in out.iterdir()):  # the first staged temporary: writing has begun
        assert process.poll() is None and time.monotonic() < deadline, (
            process.stdout.read() if process.poll() is not None else "timeout"
        )
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    after = snapshot(out)
    if process.returncode == 0:  # the signal came during the moves, which hold it back: the new set landed whole
        assert json.loads((out / "resultados.json").read_text())["config"]["parameters"]["trimmed_mean"]["beta"] == 0.1
    else:
        assert process.returncode == 128 + signal.SIGTERM and after == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--krum-f", "-5"], "--krum-f -5: must be an integer at least 0"),
        (["--trim", "nan"], "--trim nan: must be a number at least 0 and below 0.5"),
        (["--min-clients", "0"], "--min-clients 0: must be at least 1"),
        (["--krum-f", "9" * 400], "99999…: must be an integer at least 0"),
        (["--dp-noise", "1e300"], "--dp-noise 1e+300: must be a number at least 0 and at most 1000"),
        (["--attack", "noise", "--seed", "-1"], "--seed -1: must be an integer in 0..2^32-1"),
    ],
)
def test_bad_options_are_one_clear_line(client_dir, partition, tmp_path, options, message):
    done = aggregate(client_dir, partition, tmp_path, *options)
    assert done.returncode != 0 and message in last_line(done.stderr) and "Traceback" not in done.stderr
    assert len(done.stdout + done.stderr) < 2_000  # nothing echoed whole


def test_the_comparison_records_what_each_client_declared_and_flags_fedprox_without_mu_and_free_riders(
    partition, tmp_path
):
    folder = tmp_path / "pesos"
    folder.mkdir()
    w0, sha = load_initial_weights(partition)
    for cid in (1, 2, 3):
        write_client(folder, cid, perturbed(w0, 1e-3, cid), sha, num_samples=count(partition, cid))
        write_client(folder, cid, perturbed(w0, 1e-3, 10 + cid), sha, num_samples=count(partition, cid), fedprox=True)
    write_client(folder, 4, w0, sha, num_samples=count(partition, 4))  # a free rider: sends the start back
    write_update(  # a plain update renamed _fedprox: μ = 0
        folder / update_filename(4, True),
        client_id=4,
        num_samples=count(partition, 4),
        weights=w0,
        mu=0.0,
        epochs=1,
        batch_size=32,
        seed=1,
        initial_weights_sha256=sha,
    )
    done = aggregate(folder, partition, tmp_path / "out", check=True)
    results = json.loads((tmp_path / "out" / "resultados.json").read_text())
    rejected = {r["file"]: r["reason"] for r in results["rejected"]}
    assert "declares μ = 0, FedAvg's local objective" in rejected["pesos_cliente_4_fedprox.pkl"]
    assert results["methods"]["fedprox"]["label"] == "FedProx (μ = 0.01)"
    assert results["methods"]["fedprox"]["clients"] == [1, 2, 3]
    assert results["local_models"]["1"]["declared"] == {"mu": 0.0, "epochs": 1, "batch_size": 32, "seed": 1, "round": 1}
    assert results["local_models"]["4"]["note"] == "equal to the initial weights: this client trained nothing"
    assert "pesos_cliente_4.pkl equals the initial weights" in done.stdout
