"""The scenario files: every stored one loads and can run; a wrong key is named with its file."""

import re
import subprocess

import pytest

from conftest import REPO

from fedmnist import strategies
from fedmnist.simulation import RoundSettings, strategy_problems
from fedmnist.studies import scenarios
from fedmnist.studies.scenarios import ScenarioError

GOOD = """
study = "scenarios"
label = "x"
seeds = [1, 2]
[split]
num_clients = 4
partition = "iid"
[run]
rounds = 2
strategies = ["fedavg", "fedprox:0.1"]
"""


@pytest.mark.parametrize("name", scenarios.names())
def test_every_stored_scenario_loads_and_its_settings_can_run(name):
    scenario = scenarios.load(name)
    for seed in scenario.seeds or (0,):
        settings = RoundSettings(seed=seed, **scenario.run)
        configured = [strategies.parse_spec(spec, {}) for spec in scenario.strategies]
        assert settings.problems() is None
        assert strategy_problems(configured, settings, scenario.split["num_clients"]) is None
        scenario.split_spec(seed)


def write(folder, text, name="prueba"):
    (folder / f"{name}.toml").write_text(text)
    return name


def test_the_centralized_baseline_is_on_unless_a_scenario_turns_it_off(tmp_path):
    assert scenarios.load(write(tmp_path, GOOD), tmp_path).centralized is True
    off = scenarios.load(write(tmp_path, "centralized = false\n" + GOOD), tmp_path)
    assert off.centralized is False and off.seeds == (1, 2) and off.strategies == ("fedavg", "fedprox:0.1")


@pytest.mark.parametrize(
    "text, named",
    [
        ('centralized = "no"\n' + GOOD, "centralized must be true or false"),
        ("colour = 1\n" + GOOD, "unknown key(s) colour"),
        (GOOD.replace("rounds = 2", "rouns = 2"), "unknown [run] key(s) rouns"),
        (GOOD.replace("seeds = [1, 2]", "seeds = [-1]"), "seeds must be a list of integers"),
        ("label = ", "not valid TOML"),
        (GOOD.replace('study = "scenarios"', 'study = "deriva"'), "study must be one of scenarios, heterogeneity"),
        (GOOD.replace('study = "scenarios"', ""), "study must be one of"),
        (GOOD.replace('partition = "iid"', "alpha = 0.1"), "[split] --alpha: not an option of the iid partition"),
        (GOOD.replace('partition = "iid"', 'partition = "dirichlet"\nalpha = 0'), "--alpha 0: must be a positive"),
    ],
)
def test_a_wrong_scenario_file_is_named_with_what_is_wrong(tmp_path, text, named):
    with pytest.raises(ScenarioError, match="prueba.toml") as err:
        scenarios.load(write(tmp_path, text), tmp_path)
    assert named in str(err.value)


def test_a_missing_scenario_lists_the_ones_there_are(tmp_path):
    write(tmp_path, GOOD, "otro")
    with pytest.raises(ScenarioError, match="choose one of otro"):
        scenarios.load("nada", tmp_path)


@pytest.mark.parametrize(
    "run, message",
    [
        ('rounds = "5"', "--rounds '5': must be an integer in 1..10,000"),
        ("batch_size = 100000", "--batch-size 100000: must be an integer in 1..10,000"),
        ("epochs = " + "9" * 400, "--epochs 999"),
        ("workers = 9223372036854775807", "--workers 9223372036854775807: must be an integer in 0..64"),
        ("strategies = 5", "strategies must be a non-empty list of strategy names"),
        ('optimizer = ["sgd"]', "--optimizer ['sgd']: not a name"),
    ],
)
def test_a_scenario_value_of_the_wrong_type_or_out_of_bounds_is_named_with_its_file(tmp_path, run, message):
    (tmp_path / "malo.toml").write_text(f'study = "scenarios"\n[split]\nnum_clients = 3\n[run]\n{run}\n')
    with pytest.raises(ScenarioError, match=re.escape(message)) as caught:
        scenarios.load("malo", tmp_path)
    assert str(caught.value).startswith(str(tmp_path / "malo.toml")) and len(str(caught.value)) < 200


def test_each_study_target_of_the_makefile_runs_the_scenarios_that_state_that_study():
    listed = subprocess.run(
        ["make", "-pn", "venv"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.splitlines()
    variables = dict(line.split(" := ", 1) for line in listed if " := " in line and line.split(" := ")[0].isupper())
    assert variables["SCENARIOS"].split() == scenarios.of_study("scenarios")
    assert variables["PRIVACY_SCENARIOS"].split() == scenarios.of_study("privacy")
    assert variables["FACTOR_SCENARIOS"].split() == scenarios.of_study("factors")
    assert sorted(variables["STUDY_SCENARIOS"].split()) == scenarios.of_study("study")
    assert variables["DRIFT_SCENARIOS"].split() == scenarios.of_study("heterogeneity") + scenarios.of_study("diagnosis")
