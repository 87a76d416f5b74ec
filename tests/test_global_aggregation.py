"""The instructor's CLI on fabricated updates around the real initial weights (no training needed)."""

import json
import pickle

import numpy as np
import pytest

from aggregation import fedavg
from conftest import last_line, perturbed, run_script
from split_data import load_initial_weights
from updates import update_filename, write_update


def write_client(folder, client_id, weights, sha, num_samples, fedprox=False):
    write_update(folder / update_filename(client_id, fedprox), client_id=client_id, num_samples=num_samples,
                 weights=weights, mu=0.01 if fedprox else 0.0, epochs=1, batch_size=32, seed=1,
                 initial_weights_sha256=sha)


@pytest.fixture(scope="module")
def client_dir(tiny_partition, tmp_path_factory):
    """Four honest updates (one with a _fedprox twin) and one whose shapes do not match the model."""
    folder = tmp_path_factory.mktemp("clients")
    w0, sha = load_initial_weights(tiny_partition)
    for cid in (1, 2, 3, 4):
        write_client(folder, cid, perturbed(w0, 1e-3, cid), sha, num_samples=100 * cid)
        write_client(folder, cid, perturbed(w0, 1e-3, 10 + cid), sha, num_samples=100 * cid, fedprox=True)
    bad = perturbed(w0, 1e-3, 5)
    bad[6] = bad[6][:100]  # wrong Dense kernel shape
    (folder / update_filename(5)).write_bytes(pickle.dumps({"client_id": 5, "num_samples": 10, "weights": bad, "initial_weights_sha256": sha}))
    return folder


@pytest.fixture(scope="module")
def aggregated(client_dir, tiny_partition, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    done = run_script("global_aggregation.py", "--weights-dir", str(client_dir), "--data", str(tiny_partition), "--out", str(out), check=True)
    return out, done.stdout


def test_writes_every_output_and_names_the_best(aggregated):
    out, stdout = aggregated
    results = json.loads((out / "resultados.json").read_text())
    for key in ("fedavg", "fedprox", "fedmed", "trimmed_mean", "krum"):
        assert results["methods"][key]["status"] == "ok", key
        assert (out / f"modelo_global_{key}.h5").stat().st_size > 1_000_000
    assert (out / "comparacion_metodos.png").stat().st_size > 10_000
    assert set(results["local_models"]) == {"1", "2", "3", "4"}
    assert results["best_method"] in results["methods"]
    assert "Best method:" in stdout


def test_rejected_update_is_listed_and_skipped(aggregated):
    out, stdout = aggregated
    results = json.loads((out / "resultados.json").read_text())
    assert [r["file"] for r in results["rejected"]] == ["pesos_cliente_5.pkl"]
    assert "shape (100, 256)" in results["rejected"][0]["reason"]
    assert any(line.startswith("REJECTED") and "pesos_cliente_5.pkl" in line for line in stdout.splitlines())
    assert results["methods"]["fedavg"]["clients"] == [1, 2, 3, 4]


def test_saved_fedavg_model_is_the_weighted_mean(aggregated, client_dir):
    import keras

    from updates import read_update
    from model import weight_shapes

    updates = [read_update(client_dir / update_filename(cid), weight_shapes()) for cid in (1, 2, 3, 4)]
    expected = fedavg((u.weights, u.num_samples) for u in updates)
    saved = keras.saving.load_model(aggregated[0] / "modelo_global_fedavg.h5", compile=False).get_weights()
    assert all(np.allclose(a, b, atol=1e-7) for a, b in zip(saved, expected))


def test_empty_weights_folder_is_one_clear_line(tmp_path, tiny_partition):
    done = run_script("global_aggregation.py", "--weights-dir", str(tmp_path), "--data", str(tiny_partition), "--out", str(tmp_path))
    assert done.returncode != 0
    assert "no pesos_cliente_*.pkl found" in last_line(done.stderr) and "Traceback" not in done.stderr


def test_missing_partition_says_run_split_data_first(client_dir, tmp_path):
    done = run_script("global_aggregation.py", "--weights-dir", str(client_dir), "--data", str(tmp_path / "none"), "--out", str(tmp_path))
    assert done.returncode != 0 and "run split_data.py first" in last_line(done.stderr) and "Traceback" not in done.stderr


def test_too_few_valid_clients_leaves_earlier_outputs_untouched(tmp_path, tiny_partition):
    w0, sha = load_initial_weights(tiny_partition)
    write_client(tmp_path, 1, perturbed(w0, 1e-3, 1), sha, 100)
    write_client(tmp_path, 2, [np.full_like(w, np.nan) for w in w0], sha, 100)
    earlier = tmp_path / "resultados.json"
    earlier.write_text('{"earlier": true}')
    done = run_script("global_aggregation.py", "--weights-dir", str(tmp_path), "--data", str(tiny_partition), "--out", str(tmp_path))
    assert done.returncode != 0
    assert "only 1 valid client update(s)" in last_line(done.stderr) and "NaN" in done.stdout
    assert earlier.read_text() == '{"earlier": true}'
    assert not list(tmp_path.glob("modelo_global_*.h5")) and not list(tmp_path.glob(".*"))


def test_simulated_nan_attack_is_caught_by_validation(client_dir, tiny_partition, tmp_path):
    done = run_script("global_aggregation.py", "--weights-dir", str(client_dir), "--data", str(tiny_partition),
                      "--out", str(tmp_path), "--attack", "nan", "--malicious", "1", check=True)
    results = json.loads((tmp_path / "resultados.json").read_text())
    assert results["config"]["malicious_clients"] == [1]
    rejected = {r["file"]: r["reason"] for r in results["rejected"]}
    assert "NaN" in rejected["pesos_cliente_1.pkl"] and "NaN" in rejected["pesos_cliente_1_fedprox.pkl"]
    assert results["methods"]["fedavg"]["clients"] == [2, 3, 4]
    assert "SIMULATED ATTACK: nan on clients [1]" in done.stdout


def test_more_attackers_than_clients_is_one_clear_line(client_dir, tiny_partition, tmp_path):
    done = run_script("global_aggregation.py", "--weights-dir", str(client_dir), "--data", str(tiny_partition),
                      "--out", str(tmp_path), "--attack", "scale", "--malicious", "9")
    assert done.returncode != 0 and "--malicious 9" in last_line(done.stderr) and "Traceback" not in done.stderr
