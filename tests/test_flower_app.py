"""The Flower App: strategy choice from the registry, checked replies, and real runs on loopback (needs flwr)."""

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from conftest import last_line, run_script
from fedmnist import defaults, privacy, strategies

pytest.importorskip("flwr")
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict  # noqa: E402
from flwr.serverapp import strategy as flower  # noqa: E402

from fedmnist.flower.server_app import (  # noqa: E402
    CentralEvaluation,
    NodeIdentities,
    checked_replies,
    make_strategy,
    read_node_clients,
    resumed,
    server_folder,
)
from fedmnist.flower.settings import client_id, training_config  # noqa: E402

WITH_FLOWER = [key for key, row in strategies.REGISTRY.items() if row.flower]


@pytest.mark.parametrize("key", WITH_FLOWER)
def test_run_config_picks_the_registrys_flower_class(key):
    row = strategies.REGISTRY[key]
    values = {"dp-count-noise": 0.5} if key == "dpfedavg_adaptive" else {}  # σ_b above z/2 with 5 clients
    strategy, configured = make_strategy({"strategy": key, **values}, num_clients=5)
    assert isinstance(strategy, getattr(flower, row.flower))
    assert configured.values == {**row.defaults(), **({"count_noise_ratio": 0.5} if values else {})}
    inner = strategy.strategy if row.private else strategy  # a DP wrapper's FedAvg
    assert inner.min_available_nodes == 5 and inner.fraction_evaluate == 0.0
    assert inner.weighted_by_key == ("equal-weight" if row.private else "num-examples")


def test_empty_run_config_values_are_the_projects_defaults():
    strategy, configured = make_strategy({"strategy": "", "fraction-train": "", "trim": ""}, num_clients=5)
    assert configured.name == "fedavg" and strategy.fraction_train == 1.0
    assert training_config({"local-epochs": "", "batch-size": 32}, "data").to_record() == {
        "data-dir": "data",
        "local-epochs": 1,
        "batch-size": 32,
        "optimizer": "adam",
        "learning-rate": 0.001,
        "seed": 42,
    }


def test_sgd_clients_get_sgds_default_learning_rate_and_an_unknown_optimizer_is_one_clear_error():
    assert training_config({"optimizer": "sgd"}, "data").learning_rate == defaults.LEARNING_RATES["sgd"]
    with pytest.raises(ValueError, match="run config optimizer='rmsprop': choose adam or sgd"):
        training_config({"optimizer": "rmsprop"}, "data")


def test_unknown_strategy_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown strategy 'fedsgd': choose from fedavg, fedprox"):
        make_strategy({"strategy": "fedsgd"}, num_clients=5)


def test_fedprox_sends_its_mu_to_clients():
    strategy, configured = make_strategy({"strategy": "fedprox", "mu": 0.5}, num_clients=2)
    assert strategy.proximal_mu == 0.5 and configured.name == "fedprox:0.5"


def test_a_parameter_out_of_range_names_its_key():
    with pytest.raises(ValueError, match="--trim 0.6: must be a number at least 0 and below 0.5"):
        make_strategy({"strategy": "trimmed_mean", "trim": 0.6}, num_clients=5)


def test_partition_id_maps_to_client_id_and_k_must_match():
    assert client_id({"partition-id": 0, "num-partitions": 3}, 3) == 1
    with pytest.raises(ValueError, match="num-partitions=3"):
        client_id({"partition-id": 0, "num-partitions": 3}, 5)


class Reply:
    """A reply as the ClientApp builds it; `metrics` and `extra` records change it into a hostile one."""

    def __init__(self, node, weights, num_examples, cid, metrics=None, extra=None):
        self.content = RecordDict(
            {
                "arrays": ArrayRecord([np.asarray(w) for w in weights]),
                "metrics": MetricRecord(
                    {"num-examples": num_examples, "equal-weight": 1, "train-loss": 0.5, **(metrics or {})}
                ),
                "client": ConfigRecord({"client-id": cid}),
                **(extra or {}),
            }
        )
        self.metadata = type("Metadata", (), {"src_node_id": node})()

    def has_error(self):
        return False


def checked_strategy(key, counts, shapes):
    strategy, _ = make_strategy({"strategy": key}, num_clients=len(counts))
    strategy.expected_keys = list(ArrayRecord([np.zeros(s, np.float32) for s in shapes]).keys())
    strategy.expected_shapes, strategy.expected_counts = shapes, counts
    return strategy


def test_replies_that_fail_the_update_checks_are_dropped_before_flower_aggregates():
    shapes = [(2, 2), (3,)]
    strategy = checked_strategy("fedavg", {1: 1, 2: 2, 3: 5, 4: 5}, shapes)
    honest = [[np.full(s, v, np.float32) for s in shapes] for v in (1.0, 4.0)]
    replies = [
        Reply(10, honest[0], 1, 1),
        Reply(11, honest[1], 2, 2),
        Reply(12, [np.full(s, np.nan, np.float32) for s in shapes], 5, 3),  # diverged
        Reply(13, [np.zeros((2, 3), np.float32), np.zeros(3, np.float32)], 5, 4),  # another model
        Reply(14, honest[1], 10**9, 4),  # claims more examples than its partition holds
        Reply(15, honest[1], 5, 99),  # not a client of the partition
        Reply(16, honest[1], 2, 2),
    ]  # a second reply for client 2
    arrays, _ = strategy.aggregate_train(1, replies)
    assert all(np.allclose(w, 3.0) for w in arrays.to_numpy_ndarrays())  # (1·1 + 2·4) / 3
    assert strategy.last_round == {
        "clients": [1, 2, 3, 4],
        "rejected": [3, 4],
        "rejected_unknown": 3,
        "drift": None,
        "clip": None,
    }


def prime(strategy, weights):
    """What configure_train keeps before a round, for the strategies whose server step needs it."""
    if isinstance(strategy, (flower.FedAdam, flower.FedYogi)):  # FedOpt keeps a dict of arrays
        strategy.current_arrays = {k: a.numpy() for k, a in ArrayRecord(weights).items()}
    elif hasattr(strategy, "current_arrays"):  # FedAvgM and the DP wrappers keep an ArrayRecord
        strategy.current_arrays = ArrayRecord(weights)


HOSTILE = {
    "a metric sent as a list": lambda w: Reply(13, w, 5, 4, metrics={"train-loss": [0.5, 0.4]}),
    "an extra metric": lambda w: Reply(13, w, 5, 4, metrics={"accuracy": 0.9}),
    "an extra ArrayRecord": lambda w: Reply(13, w, 5, 4, extra={"more": ArrayRecord([np.zeros(2, np.float32)])}),
    "an extra MetricRecord": lambda w: Reply(13, w, 5, 4, extra={"more": MetricRecord({"x": 1.0})}),
    "a negative equal weight": lambda w: Reply(13, w, 5, 4, metrics={"equal-weight": -3}),
    "a huge equal weight": lambda w: Reply(13, w, 5, 4, metrics={"equal-weight": 10**9}),
    "a NaN equal weight": lambda w: Reply(13, w, 5, 4, metrics={"equal-weight": float("nan")}),
    "a node claiming a bound client": lambda w: Reply(13, w, 5, 1),
}


@pytest.mark.parametrize("hostile", HOSTILE, ids=list(HOSTILE))
@pytest.mark.parametrize("key", WITH_FLOWER)
def test_a_hostile_reply_is_rejected_and_the_round_goes_on_for_every_strategy(key, hostile):
    shapes = [(2, 2), (3,)]
    strategy = checked_strategy(key, {cid: 5 for cid in range(1, 13)}, shapes)  # 12: adaptive clipping's cohort
    honest = [[np.full(s, v, np.float32) for s in shapes] for v in (1.0, 2.0, 3.0)]
    replies = [Reply(10 + i, w, 5, i + 1) for i, w in enumerate(honest)]
    start = [np.zeros(s, np.float32) for s in shapes]
    prime(strategy, start)
    strategy.aggregate_train(1, replies)  # round 1 binds nodes 10, 11, 12 to clients 1, 2, 3
    prime(strategy, start)
    attacked = (
        honest[0] if hostile != "a node claiming a bound client" else [np.full(s, 1e3, np.float32) for s in shapes]
    )
    fresh = [Reply(10 + i, w, 5, i + 1) for i, w in enumerate(honest)]
    arrays, _ = strategy.aggregate_train(2, [*fresh, HOSTILE[hostile](attacked)])
    assert strategy.last_round["clients"][:3] == [1, 2, 3]
    assert strategy.last_round["rejected"] + [strategy.last_round["rejected_unknown"]] in ([4, 0], [1])
    assert arrays is not None and all(np.all(np.isfinite(w)) for w in arrays.to_numpy_ndarrays())
    if key in ("fedavg", "fedprox", "fedmed"):  # the honest three alone: a mean and a median of 1, 2, 3
        assert all(np.allclose(w, 2.0) for w in arrays.to_numpy_ndarrays())


def test_a_node_map_the_server_holds_decides_who_a_node_is(tmp_path):
    shapes = [(2,)]
    strategy = checked_strategy("fedavg", {1: 1, 2: 1}, shapes)
    path = tmp_path / "nodos.json"
    path.write_text(json.dumps({"10": 1, "11": 2}))
    strategy.identities = NodeIdentities(read_node_clients(path, 2))
    impostor = Reply(99, [np.full(2, 1e3, np.float32)], 1, 2)  # not in the map: claims client 2, replies first
    liar = Reply(10, [np.full(2, 1e3, np.float32)], 1, 2)  # node 10 is client 1, whatever it says
    arrays, _ = strategy.aggregate_train(
        1, [impostor, liar, Reply(10, [np.ones(2, np.float32)], 1, 1), Reply(11, [np.full(2, 3.0, np.float32)], 1, 2)]
    )
    assert np.allclose(arrays.to_numpy_ndarrays()[0], 2.0)
    for bad, message in (({"10": 1, "11": 1}, "same client"), ({"10": 7}, "client id in 1..2"), ([1], "JSON object")):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=message):
            read_node_clients(path, 2)


def test_the_drift_of_the_accepted_replies_is_measured_from_the_rounds_global_model():
    shapes = [(2,)]
    strategy = checked_strategy("fedavg", {1: 1, 2: 1}, shapes)
    strategy.current_global = [np.zeros(2, np.float32)]
    strategy.aggregate_train(
        1, [Reply(10, [np.array([3.0, 4.0], np.float32)], 1, 1), Reply(11, [np.array([0.0, 1.0], np.float32)], 1, 2)]
    )
    drift = strategy.last_round["drift"]
    assert drift["client_distance"] == [5.0, 1.0] and drift["aggregate_update_norm"] == pytest.approx(
        np.hypot(1.5, 2.5)
    )


@pytest.mark.parametrize("key", ["fedavg", "fedmed", "trimmed_mean"])
def test_the_serverapps_flower_strategies_agree_with_the_registrys_rules(key):
    rng = np.random.default_rng(5)
    shapes = [(3, 3, 1, 4), (4,), (36, 5), (5,)]
    updates = [([rng.standard_normal(s).astype(np.float32) for s in shapes], int(n)) for n in rng.integers(1, 50, 7)]
    strategy = checked_strategy(key, {i + 1: n for i, (_, n) in enumerate(updates)}, shapes)
    arrays, _ = strategy.aggregate_train(1, [Reply(i, w, n, i + 1) for i, (w, n) in enumerate(updates)])
    ours = strategies.REGISTRY[key].aggregate(updates)
    assert all(np.allclose(a, b, atol=1e-6, rtol=0) for a, b in zip(ours, arrays.to_numpy_ndarrays()))


def test_every_parameter_of_a_flower_strategy_has_its_run_config_key():
    keys = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    wanted = {p.config_key for key in WITH_FLOWER for p in strategies.REGISTRY[key].parameters}
    assert wanted <= set(keys)


@pytest.mark.parametrize("key", ["fedavgm", "fedadam", "fedyogi"])
def test_flowers_server_optimizers_agree_with_the_registrys_over_three_rounds(key):
    rng = np.random.default_rng(9)
    shapes = [(3, 3, 1, 4), (4,), (36, 5), (5,)]
    counts = {1: 5, 2: 7, 3: 11}
    strategy = checked_strategy(key, counts, shapes)
    row = strategies.get(key)
    ours, state = [0.1 * rng.standard_normal(s).astype(np.float32) for s in shapes], {}
    theirs = ArrayRecord(ours)
    for server_round in (1, 2, 3):
        if isinstance(strategy, flower.FedAvgM):
            strategy.current_arrays = theirs
        else:  # what FedOpt's configure_train keeps
            strategy.current_arrays = {k: a.numpy() for k, a in theirs.items()}
        updates = [
            ([w + 0.05 * rng.standard_normal(w.shape).astype(np.float32) for w in ours], n) for n in counts.values()
        ]
        theirs, _ = strategy.aggregate_train(server_round, [Reply(i, w, n, i + 1) for i, (w, n) in enumerate(updates)])
        values = row.defaults()
        if key == "fedadam":  # Flower's bias correction, which Reddi et al.'s Algorithm 2 does not have
            t = server_round + 1
            values["server_lr"] *= np.sqrt(1 - values["beta2"] ** t) / (1 - values["beta1"] ** t)
        ours, state = row.step(updates, ours, state, values)
        assert all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(ours, theirs.to_numpy_ndarrays()))


def test_flowers_fixed_clipping_wrapper_agrees_with_dp_fedavg_without_noise():
    rng = np.random.default_rng(4)
    shapes = [(3, 3, 1, 4), (4,), (36, 5), (5,)]
    counts = {1: 5, 2: 7, 3: 11}
    strategy, _ = make_strategy({"strategy": "dpfedavg", "dp-noise": 0.0, "dp-clip": 0.5}, num_clients=3)
    strategy.expected_keys = list(ArrayRecord([np.zeros(s, np.float32) for s in shapes]).keys())
    strategy.expected_shapes, strategy.expected_counts = shapes, counts
    current = [0.1 * rng.standard_normal(s).astype(np.float32) for s in shapes]
    strategy.current_arrays = ArrayRecord(current)  # what the wrapper's configure_train keeps
    updates = [([w + rng.standard_normal(w.shape).astype(np.float32) for w in current], n) for n in counts.values()]
    theirs, _ = strategy.aggregate_train(1, [Reply(i, w, n, i + 1) for i, (w, n) in enumerate(updates)])
    values = {"noise_multiplier": 0.0, "clip": 0.5}
    ours = strategies.one_shot(strategies.get("dpfedavg"), updates, current, values, seed=0, num_clients=3)
    assert all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(ours, theirs.to_numpy_ndarrays()))
    assert strategy.last_round["clip"] == 0.5


def test_the_flower_server_reports_epsilon_at_delta_for_its_population():
    strategy, configured = make_strategy({"strategy": "dpfedavg", "dp-noise": 1.0}, num_clients=5)
    strategy.expected_counts = {cid: 10 for cid in range(1, 6)}
    evaluation = CentralEvaluation(None, None, strategy, 0, configured, (None, {"history": {configured.name: []}}, 0))
    record = evaluation.privacy(2, 0.5)
    assert record["delta"] == pytest.approx(5**-1.1) and record["clip"] == 0.5
    assert record["epsilon"] == pytest.approx(privacy.epsilon(1.0, 1.0, 2, 5**-1.1))  # q = 1: an upper bound


def adaptive_clip_after(strategy, rounds, rng):
    """The clipping norm of an adaptive DP wrapper after `rounds` rounds of 20 updates with norms uniform on [0, 10]."""
    strategy.expected_keys = list(ArrayRecord([np.zeros(1, np.float32)]).keys())
    strategy.expected_shapes, strategy.expected_counts = [(1,)], {i: 1 for i in range(1, 21)}
    for server_round in range(1, rounds + 1):
        strategy.current_arrays = ArrayRecord([np.zeros(1, np.float32)])
        replies = [Reply(i, [np.array([n], np.float32)], 1, i + 1) for i, n in enumerate(rng.uniform(0, 10, 20))]
        strategy.aggregate_train(server_round, replies)
    return strategy.clipping_norm


def test_the_serverapps_adaptive_clipping_converges_to_the_median_norm_where_flowers_own_runs_away():
    config = {"strategy": "dpfedavg_adaptive", "dp-adaptive-noise": 0.0, "dp-initial-clip": 1.0}
    ours, _ = make_strategy(config, num_clients=20)
    assert adaptive_clip_after(ours, 60, np.random.default_rng(0)) == pytest.approx(5.0, rel=0.2)
    theirs = checked_replies(flower.DifferentialPrivacyServerSideAdaptiveClipping)(
        flower.FedAvg(weighted_by_key="equal-weight"),
        noise_multiplier=0.0,
        num_sampled_clients=20,
        initial_clipping_norm=1.0,
    )
    assert adaptive_clip_after(theirs, 60, np.random.default_rng(0)) < 0.1  # if Flower fixes it, drop our override


# --- real runs on loopback ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flower_partition(tmp_path_factory):
    """2 clients of 2,000 real training images each, and 1,000 test images."""
    out = tmp_path_factory.mktemp("flower") / "data"
    run_script(
        "split_data.py",
        "--clients",
        "2",
        "--seed",
        "11",
        "--out",
        str(out),
        "--train-samples",
        "4000",
        "--test-samples",
        "1000",
        check=True,
    )
    return out


def leftover_processes():
    """Processes (not zombies) started by any flower_local.py run: they carry its marker in their environment."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"FEDMNIST_FLOWER_RUN=" in (proc / "environ").read_bytes() and " Z " not in (proc / "stat").read_text():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return found


def flower_local(*args):
    return run_script("tools/flower_local.py", *args)


@pytest.mark.slow
def test_deployment_two_supernodes_two_rounds_on_loopback(flower_partition, tmp_path):
    done = flower_local(
        "deployment",
        "--clients",
        "2",
        "--rounds",
        "2",
        "--data",
        str(flower_partition),
        "--out",
        str(tmp_path / "deployment"),
        "--timeout",
        "600",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    flower_run = json.loads((tmp_path / "deployment" / "simulacion.json").read_text())
    rows = flower_run["history"]["fedavg"]
    assert [row["round"] for row in rows] == [1, 2] and all(row["clients"] == [1, 2] for row in rows)
    assert rows[-1]["accuracy"] >= 0.85
    assert leftover_processes() == []

    # The same seeds through the project's own simulation give the same global model, hence the same accuracy,
    # and the same history format: the same config keys and the same fields in every row.
    own_out = tmp_path / "own"
    run_script(
        "experiments/simulation.py",
        "--data",
        str(flower_partition),
        "--out",
        str(own_out),
        "--rounds",
        "2",
        "--strategies",
        "fedavg",
        "--seed",
        "42",
        "--trainer",
        "per-client",  # the ClientApp's LocalTrainer: the same computation, and the same config
        check=True,
    )
    own_run = json.loads((own_out / "simulacion.json").read_text())
    own = own_run["history"]["fedavg"]
    assert [row["accuracy"] for row in own] == pytest.approx([row["accuracy"] for row in rows], abs=0.005)
    assert set(own_run["config"]) == set(flower_run["config"]) and set(own[0]) == set(rows[0])
    assert {k: v for k, v in own_run["config"].items() if k != "runtime"} == {
        k: v for k, v in flower_run["config"].items() if k != "runtime"
    }


@pytest.mark.slow
def test_a_secure_deployment_completes_a_round(flower_partition, tmp_path):
    """TLS with certificates made for the run, SuperNodes registered and authenticated, the SuperLink bound
    to every address: the flags docs/flower.md gives for separate machines, here on one."""
    done = flower_local(
        "deployment",
        "--secure",
        "--clients",
        "2",
        "--rounds",
        "1",
        "--data",
        str(flower_partition),
        "--out",
        str(tmp_path / "secure"),
        "--timeout",
        "600",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "with TLS and SuperNode authentication" in done.stdout
    rows = json.loads((tmp_path / "secure" / "simulacion.json").read_text())["history"]["fedavg"]
    assert [row["round"] for row in rows] == [1] and rows[0]["clients"] == [1, 2]
    assert leftover_processes() == []


def test_secure_is_refused_for_a_simulation(tmp_path):
    done = flower_local("simulation", "--secure", "--clients", "2", "--out", str(tmp_path / "x"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert last_line(done.stderr) == (
        "flower_local.py: error: --secure: only for deployment (the simulation runs on one SuperLink)"
    )


@pytest.mark.slow
def test_simulation_with_flwr_run_on_loopback(flower_partition, tmp_path):
    done = flower_local(
        "simulation",
        "--clients",
        "2",
        "--rounds",
        "1",
        "--strategy",
        "fedprox",
        "--data",
        str(flower_partition),
        "--out",
        str(tmp_path / "simulation"),
        "--timeout",
        "600",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "simulation" / "simulacion.json").read_text())
    assert results["config"]["runtime"] == "flower" and results["config"]["strategies"] == ["fedprox:0.01"]
    assert results["history"]["fedprox:0.01"][-1]["accuracy"] >= 0.75
    assert (tmp_path / "simulation" / "simulacion.png").stat().st_size > 10_000
    assert leftover_processes() == []


@pytest.mark.slow
def test_a_run_that_times_out_stops_every_process(flower_partition, tmp_path):
    done = flower_local(
        "deployment",
        "--clients",
        "2",
        "--rounds",
        "5",
        "--data",
        str(flower_partition),
        "--out",
        str(tmp_path / "late"),
        "--timeout",
        "3",
    )
    assert done.returncode != 0
    assert last_line(done.stderr) == (
        "flower_local.py: error: the run took longer than --timeout 3.0 s; stopped every process"
    )
    assert not (tmp_path / "late" / "simulacion.json").exists()
    assert leftover_processes() == []


def test_wrong_client_count_for_the_data_is_one_line(flower_partition, tmp_path):
    done = flower_local("deployment", "--clients", "3", "--data", str(flower_partition), "--out", str(tmp_path / "x"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert last_line(done.stderr).startswith(
        f"flower_local.py: error: {flower_partition}: holds a partition for K = 2 clients"
    )


def test_unknown_strategy_on_the_command_line_is_refused_before_anything_starts(tmp_path):
    done = flower_local("deployment", "--strategy", "fedsgd", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "invalid choice: 'fedsgd'" in last_line(done.stderr)
    assert not (tmp_path / "x").exists()


def test_an_empty_folder_setting_under_a_superlink_says_what_to_pass(monkeypatch, tmp_path):
    assert server_folder({"data-dir": str(tmp_path)}, "data-dir", defaults.DATA_DIR) == tmp_path.resolve()
    assert server_folder({"data-dir": ""}, "data-dir", defaults.DATA_DIR) == defaults.DATA_DIR.resolve()
    monkeypatch.setenv("FLWR_HOME", str(defaults.PROJECT_DIR.parent))  # as if Flower had unpacked the app there
    with pytest.raises(ValueError, match="run config out-dir is empty and this ServerApp runs from Flower's copy"):
        server_folder({"out-dir": ""}, "out-dir", defaults.RESULTS_DIR)


def test_every_round_is_written_and_a_stopped_run_resumes_from_its_last_round(tiny_partition, tmp_path):
    from fedmnist.data import load_initial_weights, load_test_data, read_manifest
    from fedmnist.history import PARTIAL_FILE, new_history, run_config
    from model import build_model

    manifest = read_manifest(tiny_partition)
    strategy, configured = make_strategy({"strategy": "fedavg"}, num_clients=3)
    strategy.last_round = {"clients": [1, 2, 3], "rejected": [], "rejected_unknown": 0, "drift": None, "clip": None}
    config = run_config(
        runtime="flower",
        data="d",
        manifest=manifest,
        fraction=1.0,
        epochs=1,
        batch_size=8,
        optimizer="sgd",
        learning_rate=0.05,
        strategies=[configured.name],
        seed=1,
    )
    weights, _ = load_initial_weights(tiny_partition)
    evaluation = CentralEvaluation(
        build_model(), load_test_data(tiny_partition), strategy, 1, configured, (tmp_path, new_history(config), 0)
    )
    for server_round in (0, 1, 2):
        evaluation(server_round, ArrayRecord([w + server_round for w in weights]))
    state = json.loads((tmp_path / PARTIAL_FILE).read_text())
    assert state["rounds_completed"] == 2 and [r["round"] for r in state["history"]["fedavg"]] == [1, 2]
    results, start, done = resumed(tmp_path, config, strategies.get("fedavg"), 5)
    assert done == 2 and all(np.array_equal(a, b + 2) for a, b in zip(start, weights))
    with pytest.raises(ValueError, match="fedadam keeps a server state"):
        resumed(tmp_path, config, strategies.get("fedadam"), 5)
