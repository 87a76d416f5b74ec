"""Multi-round simulation on a small real-MNIST partition: determinism, the reductions to FedAvg, resume, the CLI."""

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, last_line, run_script

from fedmnist import strategies
from fedmnist.data import read_manifest, weights_archive_bytes
from fedmnist.history import (
    CHECKPOINT_HASHES,
    PARTIAL_FILE,
    HistoryError,
    load_state,
    save_state,
    upgraded,
)
from fedmnist.mnist import sha256_file
from fedmnist.simulation import Federation, RoundSettings, run_rounds, sample_clients

pytestmark = pytest.mark.slow
SPECS = ["fedavg", "fedprox:0", "fedmed", "fedavgm:0", "fedadam:0.01"]
SETTINGS = RoundSettings(rounds=2, epochs=1, batch_size=32, seed=5)
SGD = dataclasses.replace(SETTINGS, optimizer="sgd")  # SCAFFOLD's clients
PER_CLIENT = dataclasses.replace(SGD, trainer="per-client", workers=1)  # in single-thread worker processes
CLI_OPTIONS = ["--rounds", "2", "--epochs", "1", "--batch-size", "32", "--strategies", *SPECS, "--seed", "5"]


def accuracies(results, name):
    return [row["accuracy"] for row in results["history"][name]]


@pytest.fixture(scope="module")
def federation(tiny_partition):
    return Federation.load(tiny_partition, read_manifest(tiny_partition))


def fedavg_and_scaffold():
    """FedAvg and count-weighted SCAFFOLD, which is FedAvg while its control variates are zero (round 1)."""
    return [strategies.parse_spec(s, {"scaffold": {"weighted": 1}}) for s in ("fedavg", "scaffold:1")]


@pytest.fixture(scope="module")
def sgd_run(federation):
    configured = fedavg_and_scaffold()
    return run_rounds(federation, configured, SGD, log=lambda line: None)[0]


@pytest.fixture(scope="module")
def first_run(federation):
    results, _ = run_rounds(federation, [strategies.parse_spec(s) for s in SPECS], SETTINGS, log=lambda line: None)
    return results


def test_two_rounds_record_every_round_of_every_strategy(first_run):
    assert first_run["rounds_completed"] == 2
    for name in SPECS:
        rows = first_run["history"][name]
        assert [row["round"] for row in rows] == [1, 2]
        assert all(row["clients"] == [1, 2, 3] and row["bytes_sent_per_client"] == 390_410 * 4 for row in rows)
        assert rows[-1]["accuracy"] > (0.5 if name == "fedavg" else 0.2)  # FedAdam's η = 0.01 steps start slowly
        assert all(
            len(row["drift"]["client_distance"]) == 3 and row["drift"]["aggregate_update_norm"] > 0 for row in rows
        )


def test_same_seed_gives_identical_accuracies(first_run, federation):
    again, _ = run_rounds(federation, [strategies.parse_spec(s) for s in SPECS], SETTINGS, log=lambda line: None)
    for name in SPECS:
        assert accuracies(again, name) == accuracies(first_run, name)


def test_fedprox_with_mu_zero_reproduces_fedavg_exactly(first_run):
    assert accuracies(first_run, "fedprox:0") == accuracies(first_run, "fedavg")
    assert [r["loss"] for r in first_run["history"]["fedprox:0"]] == [r["loss"] for r in first_run["history"]["fedavg"]]


def test_server_momentum_zero_is_fedavg(first_run):
    assert accuracies(first_run, "fedavgm:0") == accuracies(first_run, "fedavg")


def test_scaffold_is_fedavg_in_round_one_then_its_control_variates_act(sgd_run):
    losses = {name: [row["loss"] for row in rows] for name, rows in sgd_run["history"].items()}
    assert losses["scaffold:1"][0] == losses["fedavg"][0] and losses["scaffold:1"][1] != losses["fedavg"][1]
    assert all(row["bytes_sent_per_client"] == 2 * 390_410 * 4 for row in sgd_run["history"]["scaffold:1"])


def losses(results):
    return {name: [row["loss"] for row in rows] for name, rows in results["history"].items()}


def test_one_or_two_worker_processes_give_the_same_results(federation):
    configured = fedavg_and_scaffold()
    one = run_rounds(federation, configured, PER_CLIENT, log=lambda line: None)[0]
    two = run_rounds(federation, configured, dataclasses.replace(PER_CLIENT, workers=2), log=lambda line: None)[0]
    assert losses(one) == losses(two)


def test_the_batched_trainer_gives_the_same_history_for_any_workers(federation, sgd_run):
    configured = fedavg_and_scaffold()
    two = run_rounds(federation, configured, dataclasses.replace(SGD, workers=2), log=lambda line: None)[0]
    assert losses(two) == losses(sgd_run)


def test_the_batched_and_per_client_trainers_agree(federation, sgd_run):
    configured = fedavg_and_scaffold()
    per_client = run_rounds(federation, configured, PER_CLIENT, log=lambda line: None)[0]
    for name in ("fedavg", "scaffold:1"):
        assert losses(per_client)[name] == pytest.approx(losses(sgd_run)[name], rel=0.02)


def test_run_rounds_leaves_the_state_it_was_given_unchanged(federation):
    configured = [strategies.parse_spec("fedavg")]
    one, weights = run_rounds(
        federation, configured, RoundSettings(rounds=1, epochs=1, batch_size=32, seed=5), log=lambda line: None
    )
    snapshot = json.dumps(one)
    run_rounds(federation, configured, SETTINGS, one, weights, log=lambda line: None)
    assert json.dumps(one) == snapshot


def test_cli_resume_reaches_the_same_result(first_run, tiny_partition, tmp_path):
    out = tmp_path / "c"
    one_round = ["--rounds", "1", *CLI_OPTIONS[2:]]
    run_script("experiments/simulation.py", "--data", str(tiny_partition), "--out", str(out), *one_round, check=True)
    run_script(
        "experiments/simulation.py",
        "--data",
        str(tiny_partition),
        "--out",
        str(out),
        *CLI_OPTIONS,
        "--resume",
        check=True,
    )
    resumed = json.loads((out / "simulacion.json").read_text())
    for name in SPECS:
        assert accuracies(resumed, name) == accuracies(first_run, name)
    checkpoints = sorted(path.name for path in (out / "pesos_globales").glob("*/*.npz"))
    assert "fedavg_pesos_ronda_002.npz" in checkpoints and "fedadam_0.01_estado_ronda_002.npz" in checkpoints
    assert not [name for name in checkpoints if "ronda_001" in name]  # only the last round is kept
    assert not (out / "simulacion.en_curso.json").exists()


def test_cli_never_replaces_finished_results_unless_forced(tiny_partition, tmp_path):
    (tmp_path / "simulacion.json").write_text('{"finished": true}')
    done = run_script("experiments/simulation.py", "--data", str(tiny_partition), "--out", str(tmp_path), *CLI_OPTIONS)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "holds finished results; pass --resume" in last_line(done.stderr)
    assert (tmp_path / "simulacion.json").read_text() == '{"finished": true}'


@pytest.mark.parametrize("content", ["", "{}", '{"config": 1}', '{"rounds_com'])
def test_cli_resume_over_a_broken_state_is_one_clear_line(tiny_partition, tmp_path, content):
    (tmp_path / "simulacion.json").write_text(content)
    done = run_script(
        "experiments/simulation.py", "--data", str(tiny_partition), "--out", str(tmp_path), *CLI_OPTIONS, "--resume"
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "not a simulation state this project wrote" in last_line(done.stderr)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--strategies", "fedprox:abc"], "strategy 'fedprox:abc': μ must be a number at least 0"),
        (["--strategies", "fedprox:nan"], "strategy 'fedprox:nan': μ must be a number at least 0"),
        (["--strategies", "fedsgd"], "strategy 'fedsgd': choose from fedavg"),
        (["--strategies", "fedmed:0.1"], "strategy 'fedmed:0.1': FedMed takes no parameter"),
        (["--learning-rate", "nan"], "--learning-rate nan: must be a positive number"),
        (["--trim", "0.7"], "--trim 0.7: must be a number at least 0 and below 0.5"),
        (["--krum-f", "-1"], "--krum-f -1: must be an integer at least 0"),
        (["--workers", "-1"], "--workers -1: must be an integer in 0..64"),
        (
            ["--strategies", "scaffold"],
            "strategy 'scaffold:1': SCAFFOLD is defined for sgd clients, not adam; use --optimizer sgd",
        ),
        (["--seeds", "1", "1"], "--seeds 1 1: each seed once"),
        (["--fedadam-beta2", "2"], "--fedadam-beta2 2.0: must be a number at least 0 and at most 1"),
        (
            ["--strategies", "dpfedavg", "--fraction", "0.5"],
            "'dpfedavg:1': DP-FedAvg's ε assumes each client joins a round",
        ),
        (["--dp-quantile", "1.5"], "--dp-quantile 1.5: must be a number at least 0 and at most 1"),
        (["--dp-clip", "0"], "--dp-clip 0.0: must be a number at least 1e-12"),
        (
            ["--strategies", "dpfedavg_adaptive"],
            "needs a clipped-count noise above 0.5, not 0.15: raise r (--dp-count-noise)",
        ),
    ],
)
def test_cli_bad_options_stop_before_training(tiny_partition, tmp_path, options, message):
    done = run_script("experiments/simulation.py", "--data", str(tiny_partition), "--out", str(tmp_path), *options)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert message in last_line(done.stderr)


def test_killing_a_run_ends_its_worker_processes(tiny_partition, tmp_path):
    command = [sys.executable, "experiments/simulation.py", "--data", str(tiny_partition), "--out", str(tmp_path)]
    options = ["--trainer", "per-client", "--workers", "2", "--rounds", "50"]
    run = subprocess.Popen([*command, *options], cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (tmp_path / "simulacion.en_curso.json").exists():
        time.sleep(0.5)  # a round has ended: the workers are at work
    children = [int(pid) for pid in Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()]
    assert len(children) >= 2
    run.kill()
    run.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (alive := [pid for pid in children if status(pid) not in ("Z", "gone")]):
        time.sleep(0.5)
    assert alive == []


def status(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "gone"


def test_client_sampling_is_shared_and_seeded():
    rounds = [sample_clients(100, 0.1, 42, r) for r in (1, 2)]
    assert all(len(r) == 10 for r in rounds) and rounds[0] != rounds[1]
    assert rounds[0] == sample_clients(100, 0.1, 42, 1)


def test_poisson_sampling_takes_each_client_with_probability_c():
    rounds = [sample_clients(100, 0.1, 42, r, "poisson") for r in range(1, 401)]
    assert rounds[0] == sample_clients(100, 0.1, 42, 1, "poisson")
    counts = [len(r) for r in rounds]
    assert len(set(counts)) > 5 and abs(sum(counts) / len(counts) - 10) < 0.5  # mean q·N, sd 0.15 over 400 rounds
    assert all(r == sorted(set(r)) and 1 <= r[0] and r[-1] <= 100 for r in rounds if r)
    assert sample_clients(3, 1.0, 42, 1, "poisson") == [1, 2, 3]


def test_cli_dp_fedavg_reports_the_accountants_epsilon_and_resumes_exactly(tiny_partition, tmp_path):
    from fedmnist import privacy

    options = ["--data", str(tiny_partition), *CLI_OPTIONS[2:6], "--seed", "5", "--sampling", "poisson"]
    options += ["--fraction", "0.7", "--strategies", "dpfedavg:0.5", "dpfedavg_adaptive:0.5", "--dp-clip", "3"]
    options += ["--dp-count-noise", "0.5"]  # σ_b = 0.5·0.7·3, above z/2 (the default 1/20 suits a hundred clients)
    run_script("experiments/simulation.py", *options, "--out", str(tmp_path / "a"), "--rounds", "3", check=True)
    run_script("experiments/simulation.py", *options, "--out", str(tmp_path / "b"), "--rounds", "1", check=True)
    run_script("experiments/simulation.py", *options, "--out", str(tmp_path / "b"), "--rounds", "3", "--resume")
    whole, resumed = (json.loads((tmp_path / d / "simulacion.json").read_text()) for d in "ab")
    assert whole["config"]["sampling"] == "poisson"
    for name in ("dpfedavg:0.5", "dpfedavg_adaptive:0.5"):
        assert accuracies(resumed, name) == accuracies(whole, name)
        rows = whole["history"][name]
        for row in rows:
            expected = privacy.epsilon(0.5, 0.7, row["round"], row["privacy"]["delta"])
            assert row["privacy"]["epsilon"] == pytest.approx(expected)
    assert [row["privacy"]["clip"] for row in whole["history"]["dpfedavg:0.5"]] == [3.0] * 3
    adaptive = [row["privacy"]["clip"] for row in whole["history"]["dpfedavg_adaptive:0.5"]]
    assert adaptive[0] == 1.0 and len(set(adaptive)) == 3  # --dp-initial-clip's default, then moved every round


def test_cli_seeds_keep_every_run_and_train_the_centralized_baseline_once(tiny_partition, tmp_path):
    options = ["--data", str(tiny_partition), "--out", str(tmp_path), *CLI_OPTIONS[2:6], "--rounds", "1"]
    options += ["--strategies", "fedavg", "scaffold:1", "--optimizer", "sgd", "--seeds", "1", "2"]
    run_script("experiments/simulation.py", *options, check=True)
    summary = json.loads((tmp_path / "resumen.json").read_text())
    assert summary["config"]["seeds"] == [1, 2] and len(summary["strategies"]["fedavg"]["curves"]) == 2
    assert "scaffold:1 - centralized" in summary["paired_final_accuracy"]
    baseline = (tmp_path / "semilla_2" / "centralizado.json").read_text()
    assert json.loads(baseline)["config"]["epochs"] == 1  # R·C·E = 1·1·1
    run_script("experiments/simulation.py", *options, "--resume", check=True)
    assert (tmp_path / "semilla_2" / "centralizado.json").read_text() == baseline  # kept, not trained again


@pytest.fixture(scope="module")
def saved_state(federation, tmp_path_factory):
    """One round of FedAvg checkpointed as a run in progress: (folder, its config)."""
    out = tmp_path_factory.mktemp("estado")
    settings = dataclasses.replace(SETTINGS, rounds=1)
    results, states = run_rounds(federation, [strategies.parse_spec("fedavg")], settings, log=lambda line: None)
    save_state(out, results, states)
    return out, upgraded(json.loads((out / PARTIAL_FILE).read_text())["config"])  # as the CLI computes it again


def tampered_copy(saved_state, tmp_path, change_state=None, weights=None, rehash=False):
    out, config = saved_state
    copy = tmp_path / "copia"
    shutil.copytree(out, copy)
    state_path = copy / PARTIAL_FILE
    state = json.loads(state_path.read_text())
    if weights is not None:
        checkpoint = next(copy.glob("pesos_globales/*/fedavg_pesos_ronda_001.npz"))
        checkpoint.write_bytes(weights_archive_bytes(weights))
        if rehash:
            state[CHECKPOINT_HASHES][checkpoint.name] = sha256_file(checkpoint)
    text = change_state(json.dumps(state)) if change_state else json.dumps(state)
    state_path.write_text(text)
    return copy, config


@pytest.mark.parametrize(
    "change",
    [
        lambda text: text.replace('"rounds_completed": 1', '"rounds_completed": 1e400'),
        lambda text: "[" * 100_000 + "]" * 100_000,
        lambda text: text.replace('"accuracy": ', '"accuracy": "high", "was": ', 1),
        lambda text: text.replace('"round": 1', '"round": 7', 1),
    ],
)
def test_a_tampered_state_is_one_line_naming_its_file(saved_state, tmp_path, change):
    copy, config = tampered_copy(saved_state, tmp_path, change)
    with pytest.raises(HistoryError, match="not a simulation state this project wrote"):
        load_state(copy, config)


def test_a_checkpoint_that_is_not_the_one_recorded_or_not_usable_weights_is_refused(saved_state, tmp_path, federation):
    weights = federation.initial_weights
    cases = [
        ([w * np.nan for w in weights], False, "SHA-256 is not the one the state recorded"),
        ([w * np.nan for w in weights], True, "not finite"),
        ([np.full_like(w, 3e38) for w in weights], True, "beyond 1e30"),
        ([w.astype(np.int8) for w in weights], True, "not float32"),
        (weights[:-1], True, "the model's shapes"),
    ]
    for tampered, rehash, message in cases:
        copy, config = tampered_copy(saved_state, tmp_path / message[:8], weights=tampered, rehash=rehash)
        with pytest.raises(HistoryError, match=message):
            load_state(copy, config)
    copy, config = tampered_copy(saved_state, tmp_path / "intacto")
    assert load_state(copy, config)[1]["fedavg"].weights[0].dtype == np.float32
