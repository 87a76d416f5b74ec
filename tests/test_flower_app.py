"""The Flower App: strategy choice, checked replies, and real runs on loopback (skipped without flwr)."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import last_line, run_script

pytest.importorskip("flwr")
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict  # noqa: E402

from fedmnist.server_app import make_strategy  # noqa: E402
from fedmnist.settings import client_id  # noqa: E402

CONFIG = {"strategy": "fedavg", "fraction-train": 1.0, "proximal-mu": 0.01, "trim-beta": 0.2, "krum-f": 1}


@pytest.mark.parametrize("key, flower_class, name", [
    ("fedavg", "FedAvg", "fedavg"), ("fedprox", "FedProx", "fedprox:0.01"), ("fedmed", "FedMedian", "fedmed"),
    ("trimmed_mean", "FedTrimmedAvg", "trimmed_mean"), ("krum", "Krum", "krum"),
])
def test_run_config_picks_flowers_own_strategy(key, flower_class, name):
    from flwr.serverapp import strategy as flower

    strategy, result_name = make_strategy({**CONFIG, "strategy": key}, num_clients=5)
    assert isinstance(strategy, getattr(flower, flower_class)) and result_name == name
    assert strategy.min_available_nodes == 5 and strategy.fraction_evaluate == 0.0


def test_unknown_strategy_is_one_clear_error():
    with pytest.raises(ValueError, match="strategy='fedsgd': choose from fedavg, fedprox"):
        make_strategy({**CONFIG, "strategy": "fedsgd"}, num_clients=5)


def test_fedprox_sends_proximal_mu_to_clients():
    strategy, _ = make_strategy({**CONFIG, "strategy": "fedprox", "proximal-mu": 0.5}, num_clients=2)
    assert strategy.proximal_mu == 0.5


def test_partition_id_maps_to_client_id_and_k_must_match():
    context = SimpleNamespace(node_config={"partition-id": 0, "num-partitions": 3})
    assert client_id(context, 3) == 1
    with pytest.raises(ValueError, match="num-partitions=3"):
        client_id(context, 5)


def reply(node, weights, num_examples, cid):
    content = RecordDict({"arrays": ArrayRecord([np.asarray(w) for w in weights]),
                          "metrics": MetricRecord({"num-examples": num_examples}), "client": ConfigRecord({"client-id": cid})})
    return SimpleNamespace(content=content, metadata=SimpleNamespace(src_node_id=node), has_error=lambda: False)


def test_replies_that_fail_the_update_checks_are_dropped_before_flower_aggregates():
    strategy, _ = make_strategy(CONFIG, num_clients=4)
    shapes = [(2, 2), (3,)]
    strategy.expected_keys = list(ArrayRecord([np.zeros(s, np.float32) for s in shapes]).keys())
    strategy.expected_shapes = shapes
    strategy.expected_counts = {1: 1, 2: 2, 3: 5, 4: 5}
    honest = [[np.full(s, v, np.float32) for s in shapes] for v in (1.0, 4.0)]
    replies = [reply(10, honest[0], 1, 1), reply(11, honest[1], 2, 2),
               reply(12, [np.full(s, np.nan, np.float32) for s in shapes], 5, 3),  # diverged
               reply(13, [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)], 5, 4),  # another model
               reply(14, honest[1], 10**9, 4),  # claims more examples than its partition holds
               reply(15, honest[1], 5, 99),  # not a client of the partition
               reply(16, honest[1], 2, 2)]  # a second reply for client 2
    arrays, _ = strategy.aggregate_train(1, replies)
    assert all(np.allclose(w, 3.0) for w in arrays.to_numpy_ndarrays())  # (1·1 + 2·4) / 3
    assert strategy.last_round == {"clients": [1, 2], "rejected": [12, 13, 14, 15, 16]}


# --- real runs on loopback ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flower_partition(tmp_path_factory):
    """2 clients of 2,000 real training images each, and 1,000 test images."""
    out = tmp_path_factory.mktemp("flower") / "data"
    run_script("split_data.py", "--clients", "2", "--seed", "11", "--out", str(out),
               "--train-samples", "4000", "--test-samples", "1000", check=True)
    return out


def leftover_processes():
    """Processes (not zombies) started by any run_local.py run: they carry its marker in their environment."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"FEDMNIST_FLOWER_RUN=" in (proc / "environ").read_bytes() and " Z " not in (proc / "stat").read_text():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return found


def run_local(*args):
    return run_script("flower_app/run_local.py", *args)


@pytest.mark.slow
def test_deployment_two_supernodes_two_rounds_on_loopback(flower_partition, tmp_path):
    done = run_local("deployment", "--clients", "2", "--rounds", "2", "--data", str(flower_partition),
                     "--out", str(tmp_path / "deployment"), "--timeout", "600")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "deployment" / "simulacion.json").read_text())
    history = results["history"]["fedavg"]
    assert [row["round"] for row in history] == [1, 2] and all(row["clients"] == [1, 2] for row in history)
    assert history[-1]["accuracy"] >= 0.85
    assert results["launcher"]["mode"] == "deployment"
    assert leftover_processes() == []

    # The same seeds through the project's own simulation give the same global model, hence the same accuracy.
    own_out = tmp_path / "own"
    run_script("federated_simulation.py", "--data", str(flower_partition), "--out", str(own_out), "--rounds", "2",
               "--strategies", "fedavg", "--seed", "42", check=True)
    own = json.loads((own_out / "simulacion.json").read_text())["history"]["fedavg"]
    assert [row["accuracy"] for row in own] == pytest.approx([row["accuracy"] for row in history], abs=0.005)


@pytest.mark.slow
def test_simulation_with_flwr_run_on_loopback(flower_partition, tmp_path):
    done = run_local("simulation", "--clients", "2", "--rounds", "1", "--strategy", "fedprox", "--data", str(flower_partition),
                     "--out", str(tmp_path / "simulation"), "--timeout", "600")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "simulation" / "simulacion.json").read_text())
    assert results["config"]["flower_strategy"] == "FedProx"
    assert results["history"]["fedprox:0.01"][-1]["accuracy"] >= 0.75
    assert (tmp_path / "simulation" / "simulacion.png").stat().st_size > 10_000
    assert leftover_processes() == []


@pytest.mark.slow
def test_a_run_that_times_out_stops_every_process(flower_partition, tmp_path):
    done = run_local("deployment", "--clients", "2", "--rounds", "5", "--data", str(flower_partition),
                     "--out", str(tmp_path / "late"), "--timeout", "3")
    assert done.returncode != 0
    assert last_line(done.stderr) == "run_local.py: error: the run took longer than --timeout 3.0 s; stopped every process"
    assert not (tmp_path / "late" / "simulacion.json").exists()
    assert leftover_processes() == []


def test_wrong_client_count_for_the_data_is_one_line(flower_partition, tmp_path):
    done = run_local("deployment", "--clients", "3", "--data", str(flower_partition), "--out", str(tmp_path / "x"))
    assert done.returncode != 0
    assert last_line(done.stderr).startswith(f"run_local.py: error: {flower_partition}: holds a partition for K = 2 clients")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("key", ["fedavg", "fedmed", "trimmed_mean"])
def test_the_serverapps_flower_strategies_agree_with_the_projects_rules(key):
    from aggregation import fedavg, fedmed, trimmed_mean

    rng = np.random.default_rng(5)
    shapes = [(3, 3, 1, 4), (4,), (36, 5), (5,)]
    updates = [([rng.standard_normal(s).astype(np.float32) for s in shapes], int(n)) for n in rng.integers(1, 50, 7)]
    strategy, _ = make_strategy({**CONFIG, "strategy": key}, num_clients=len(updates))
    strategy.expected_keys = list(ArrayRecord(updates[0][0]).keys())
    strategy.expected_shapes = shapes
    strategy.expected_counts = {i + 1: n for i, (_, n) in enumerate(updates)}
    arrays, _ = strategy.aggregate_train(1, [reply(i, w, n, i + 1) for i, (w, n) in enumerate(updates)])
    ours = {"fedavg": lambda: fedavg(updates), "fedmed": lambda: fedmed([w for w, _ in updates]),
            "trimmed_mean": lambda: trimmed_mean([w for w, _ in updates], 0.2)}[key]()
    assert all(np.allclose(a, b, atol=1e-6, rtol=0) for a, b in zip(ours, arrays.to_numpy_ndarrays()))


def test_unknown_strategy_on_the_command_line_is_refused_before_anything_starts(tmp_path):
    done = run_local("deployment", "--strategy", "fedsgd", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "invalid choice: 'fedsgd'" in last_line(done.stderr)
    assert not (tmp_path / "x").exists()
