"""Tuning on validation: grids declared in a scenario, checked, run resumably, and the best point chosen."""

import json

import pytest

from fedmnist.studies import StudyError, scenarios
from fedmnist.studies.tuning import REPORT_DIR, TUNING_FILE, checked_tuning, grid_points, point_folder, report, tune

TINY = """
study = "study"
label = "diminuto"
seeds = [7]
[split]
num_clients = 3
train_samples = 600
test_samples = 200
[run]
epochs = 1
batch_size = 32
optimizer = "sgd"
strategies = ["fedavg", "fedprox:0.01"]
[tuning]
seeds = [8]
rounds = 5
learning_rate = [0.05]
[tuning.grid]
fedprox = { mu = [0.0, 0.5] }
"""


def scenario_from(tmp_path, text):
    (tmp_path / "diminuto.toml").write_text(text)
    return scenarios.load("diminuto", tmp_path)


def test_a_grid_is_every_client_rate_with_every_combination_of_values(tmp_path):
    tuning = {"seeds": [1], "rounds": 5, "learning_rate": [0.1, 0.2], "grid": {"fedavgm": {"momentum": [0, 0.9]}}}
    points = grid_points("fedavgm", tuning, 0.05)
    assert points == [
        {"learning_rate": 0.1, "momentum": 0},
        {"learning_rate": 0.1, "momentum": 0.9},
        {"learning_rate": 0.2, "momentum": 0},
        {"learning_rate": 0.2, "momentum": 0.9},
    ]
    assert point_folder(points[1]) == "learning_rate=0.1,momentum=0.9"
    assert grid_points("fedavg", {**tuning, "learning_rate": []}, 0.05) == [{"learning_rate": 0.05}]


def test_a_strategy_may_declare_its_own_client_rates(tmp_path):
    tuning = {"seeds": [1], "rounds": 5, "learning_rate": [0.1, 0.2], "grid": {"fedadam": {"learning_rate": [0.03]}}}
    assert grid_points("fedadam", tuning, 0.05) == [{"learning_rate": 0.03}]
    assert grid_points("fedavg", tuning, 0.05) == [{"learning_rate": 0.1}, {"learning_rate": 0.2}]
    scenario = scenario_from(tmp_path, TINY.replace("fedprox = { mu", "fedprox = { learning_rate = [0], mu"))
    with pytest.raises(StudyError, match="grid.fedprox.learning_rate must be a non-empty list of positive"):
        checked_tuning(scenario.tuning, scenario)


@pytest.mark.parametrize(
    "change, message",
    [
        ("seeds = [7]", "seeds \\[7\\] are also the seeds the scenario reports"),
        ("rounds = 2", "rounds must be an integer of at least 5"),
        ("learning_rate = [-1]", "learning_rate must be a list of positive numbers"),
    ],
)
def test_a_tuning_table_that_cannot_work_is_named(tmp_path, change, message):
    key = change.split(" = ")[0]  # the [tuning] table's line of that key, changed
    text = TINY.replace(next(line for line in TINY.split("[tuning]")[1].splitlines() if line.startswith(key)), change)
    scenario = scenario_from(tmp_path, text)
    with pytest.raises(StudyError, match=message):
        checked_tuning(scenario.tuning, scenario)


def test_a_grid_for_an_unknown_parameter_is_named(tmp_path):
    scenario = scenario_from(tmp_path, TINY.replace("fedprox = { mu", "fedprox = { beta"))
    with pytest.raises(StudyError, match="grid.fedprox.beta must be a non-empty list for a parameter of fedprox"):
        checked_tuning(scenario.tuning, scenario)


@pytest.mark.slow
def test_tuning_chooses_on_validation_and_continues_where_it_stopped(tmp_path):
    scenario = scenario_from(tmp_path, TINY)
    found = tune(scenario, tmp_path / "datos", tmp_path / "ajuste", log=lambda line: None)
    fedavg, fedprox = found["strategies"]["fedavg"], found["strategies"]["fedprox"]
    assert [p["setting"] for p in fedprox["grid"]] == [
        {"learning_rate": 0.05, "mu": 0.0},
        {"learning_rate": 0.05, "mu": 0.5},
    ]
    # FedProx with μ = 0 is FedAvg exactly, so it scores the same on validation
    assert fedprox["grid"][0]["validation_score"] == fedavg["grid"][0]["validation_score"]
    best = max(fedprox["grid"], key=lambda p: p["validation_score"])
    assert fedprox["chosen"] == best["setting"] and 0 < best["validation_score"] <= 1
    written = (tmp_path / "ajuste" / TUNING_FILE).read_text()
    assert json.loads(written) == found
    again = tune(scenario, tmp_path / "datos", tmp_path / "ajuste", log=lambda line: None)  # every run finished
    assert again == found


@pytest.mark.slow
def test_the_report_runs_each_chosen_setting_on_the_reported_seeds_beside_a_centralized_baseline(tmp_path):
    scenario = scenario_from(tmp_path, TINY.replace("seeds = [7]", "seeds = [7, 9]"))
    found = tune(scenario, tmp_path / "datos", tmp_path / "ajuste", log=lambda line: None)
    summary = report(scenario, found, tmp_path / "datos", tmp_path / "ajuste", log=lambda line: None)
    mu = found["strategies"]["fedprox"]["chosen"]["mu"]
    assert list(summary["strategies"]) == ["fedavg", f"fedprox:{mu:g}"] and summary["config"]["seeds"] == [7, 9]
    assert set(summary["config"]["learning_rate"].values()) == {0.05}
    assert len(summary["centralized"]["final_accuracy"]["values"]) == 2
    verdict = summary["comparisons"]["last_5_rounds_accuracy"][f"fedavg - fedprox:{mu:g}"]["verdict"]
    assert verdict in ("better", "worse", "equivalent", "inconclusive")
    # each strategy's runs are its own, on the reported seeds only
    assert sorted(p.name for p in (tmp_path / "ajuste" / REPORT_DIR / "fedavg").iterdir()) == ["semilla_7", "semilla_9"]
