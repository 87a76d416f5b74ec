"""Multi-round simulation on a small real-MNIST partition: determinism, FedProx with mu = 0, resume."""

import json

import pytest

import federated_simulation
from federated_simulation import Strategy, sample_clients

pytestmark = pytest.mark.slow


def simulate(data, out, *extra):
    federated_simulation.main(["--data", str(data), "--out", str(out), "--rounds", "2", "--epochs", "1", "--batch-size", "32",
                               "--strategies", "fedavg", "fedprox:0", "fedmed", "--seed", "5", *extra])
    return json.loads((out / "simulacion.json").read_text())


def accuracies(results, name):
    return [row["accuracy"] for row in results["history"][name]]


@pytest.fixture(scope="module")
def first_run(tiny_partition, tmp_path_factory):
    return simulate(tiny_partition, tmp_path_factory.mktemp("sim") / "a")


def test_two_round_three_client_run_records_every_round(first_run):
    assert first_run["rounds_completed"] == 2
    for name in ("fedavg", "fedprox:0", "fedmed"):
        history = first_run["history"][name]
        assert [row["round"] for row in history] == [1, 2]
        assert all(row["clients"] == [1, 2, 3] and row["bytes_sent_per_client"] == 390_410 * 4 for row in history)
        assert history[-1]["accuracy"] > 0.5
    assert set(first_run["summary"]["fedavg"]) == {"final_accuracy", "rounds_to_97", "rounds_to_99", "seconds"}


def test_same_seed_gives_identical_accuracies(first_run, tiny_partition, tmp_path):
    again = simulate(tiny_partition, tmp_path / "b")
    for name in first_run["history"]:
        assert accuracies(again, name) == accuracies(first_run, name)


def test_fedprox_with_mu_zero_reproduces_fedavg_exactly(first_run):
    assert accuracies(first_run, "fedprox:0") == accuracies(first_run, "fedavg")
    assert [r["loss"] for r in first_run["history"]["fedprox:0"]] == [r["loss"] for r in first_run["history"]["fedavg"]]


def test_resume_reaches_the_same_result(first_run, tiny_partition, tmp_path):
    out = tmp_path / "c"
    federated_simulation.main(["--data", str(tiny_partition), "--out", str(out), "--rounds", "1", "--epochs", "1", "--batch-size", "32",
                               "--strategies", "fedavg", "fedprox:0", "fedmed", "--seed", "5"])
    resumed = simulate(tiny_partition, out, "--resume")
    for name in first_run["history"]:
        assert accuracies(resumed, name) == accuracies(first_run, name)
    final = sorted((out / "pesos_globales").glob("*/fedavg_ronda_002.npz"))
    assert len(final) == 1 and not (out / "simulacion.en_curso.json").exists()


def test_a_new_run_never_replaces_finished_results_unless_forced(first_run, tiny_partition, tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "simulacion.json").write_text('{"finished": true}')
    with pytest.raises(SystemExit) as stopped:
        simulate(tiny_partition, out)
    assert "holds finished results; pass --resume" in str(stopped.value.code)
    assert (out / "simulacion.json").read_text() == '{"finished": true}'


@pytest.mark.parametrize("content", ["", "{}", '{"config": 1}', '{"rounds_com'])
def test_resume_over_a_broken_state_is_one_clear_line(tiny_partition, tmp_path, content):
    (tmp_path / "simulacion.json").write_text(content)
    with pytest.raises(SystemExit) as stopped:
        simulate(tiny_partition, tmp_path, "--resume")
    assert "not a simulation state this script wrote" in str(stopped.value.code)


@pytest.mark.parametrize("options, message", [
    (["--strategies", "fedprox:abc"], "--strategies fedprox:abc: mu must be a finite number"),
    (["--strategies", "fedprox:nan"], "--strategies fedprox:nan: mu must be a finite number"),
    (["--learning-rate", "nan"], "--learning-rate nan: must be a positive number"),
    (["--trim", "0.7"], "--trim 0.7: must be in [0, 0.5)"),
    (["--krum-f", "-1"], "--krum-f -1: must be at least 0"),
])
def test_bad_options_stop_before_training(tiny_partition, tmp_path, options, message):
    with pytest.raises(SystemExit) as stopped:
        federated_simulation.main(["--data", str(tiny_partition), "--out", str(tmp_path), *options])
    assert message in str(stopped.value.code)


def test_client_sampling_is_shared_and_seeded():
    rounds = [sample_clients(100, 0.1, 42, r) for r in (1, 2)]
    assert all(len(r) == 10 for r in rounds) and rounds[0] != rounds[1]
    assert rounds[0] == sample_clients(100, 0.1, 42, 1)


def test_strategy_specs():
    assert Strategy.parse("fedprox:0.1", 0.01).mu == 0.1
    assert Strategy.parse("fedprox", 0.01).name == "fedprox:0.01"
    with pytest.raises(ValueError):
        Strategy.parse("fedmed:0.1", 0.01)
    with pytest.raises(ValueError):
        Strategy.parse("fedsgd", 0.01)
