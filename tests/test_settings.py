"""The run settings' one table (fedmnist/settings.py) is what every front end takes its settings from."""

import argparse
import dataclasses
import tomllib

import pytest
from conftest import REPO

from fedmnist.defaults import LEARNING_RATES
from fedmnist.flower.settings import setting, training_config
from fedmnist.restricted_pickle import printable
from fedmnist.settings import SETTINGS, add_options, flower_keys
from fedmnist.simulation import RoundSettings


def test_round_settings_are_the_table_s_settings_with_its_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(RoundSettings)}
    assert list(fields) == list(SETTINGS)
    assert {name: row.default for name, row in SETTINGS.items()} == fields


def test_the_flower_app_s_run_config_declares_every_setting_it_takes():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(flower_keys()) <= set(declared)


def test_a_command_line_offers_each_setting_with_its_symbol_and_default():
    parser = argparse.ArgumentParser()
    add_options(parser, ("rounds", "learning_rate"), own={"rounds": 3})
    assert vars(parser.parse_args(["--lr", "0.5"])) == {"rounds": 3, "learning_rate": 0.5}
    assert "R, communication rounds (default: 3)" in " ".join(parser.format_help().split())


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("rounds", "5", "--rounds '5': must be an integer in 1..10,000"),
        ("seed", -1, "--seed -1: must be an integer in 0..2^32-1"),
        ("fraction", 1.5, "--fraction 1.5: must be in (0, 1]"),
        ("learning_rate", float("nan"), "--learning-rate nan: must be a positive number"),
        ("optimizer", ["sgd"], "--optimizer ['sgd']: not a name"),
        ("trainer", "gpu", "--trainer 'gpu': choose batched or per-client"),
        ("attack", None, None),
        ("learning_rate", 10**400, f"--learning-rate {printable(repr(10**400), 40)}: must be a positive number"),
    ],
)
def test_each_setting_names_itself_and_what_it_takes(name, value, message):
    assert SETTINGS[name].problem(value) == message


def test_the_flower_run_config_goes_through_the_same_checks():
    assert setting({}, "epochs") == SETTINGS["epochs"].default
    with pytest.raises(ValueError, match="run config local-epochs=0: must be an integer in 1..1,000"):
        setting({"local-epochs": 0}, "epochs")
    with pytest.raises(ValueError, match="run config optimizer='rmsprop': choose adam or sgd"):
        training_config({"optimizer": "rmsprop"}, "data")
    assert training_config({"optimizer": "sgd"}, "data").learning_rate == LEARNING_RATES["sgd"]
