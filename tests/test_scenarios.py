"""The scenario files: every stored one loads and can run; a wrong key is named with its file."""

import pytest

from fedmnist import scenarios, strategies
from fedmnist.partition import PartitionError
from fedmnist.simulation import RoundSettings, strategy_problems

GOOD = """
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
    ],
)
def test_a_wrong_scenario_file_is_named_with_what_is_wrong(tmp_path, text, named):
    with pytest.raises(PartitionError, match="prueba.toml") as err:
        scenarios.load(write(tmp_path, text), tmp_path)
    assert named in str(err.value)


def test_a_missing_scenario_lists_the_ones_there_are(tmp_path):
    write(tmp_path, GOOD, "otro")
    with pytest.raises(PartitionError, match="choose one of otro"):
        scenarios.load("nada", tmp_path)
