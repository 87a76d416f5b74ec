"""Tuning on validation: grids declared in a scenario, checked, run resumably, and the best point chosen."""

import json

import pytest

from fedmnist import scenarios
from fedmnist.partition import PartitionError
from fedmnist.tuning import TUNING_FILE, checked_tuning, grid_points, point_folder, tune

TINY = """
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
    with pytest.raises(PartitionError, match=message):
        checked_tuning(scenario.tuning, scenario)


def test_a_grid_for_an_unknown_parameter_is_named(tmp_path):
    scenario = scenario_from(tmp_path, TINY.replace("fedprox = { mu", "fedprox = { beta"))
    with pytest.raises(PartitionError, match="grid.fedprox.beta must be a non-empty list for a parameter of fedprox"):
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
