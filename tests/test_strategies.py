"""The strategy registry: every consumer reads it, so a new rule is one registered row (and its tests)."""

import argparse

import numpy as np
import pytest
from conftest import perturbed

from fedmnist import strategies
from fedmnist.comparison import compare, format_table, write_outputs
from fedmnist.data import load_initial_weights, read_manifest
from fedmnist.studies import report
from fedmnist.updates import update_filename, write_update


def coordinate_max(pairs, scale):
    """A toy rule: the coordinate-wise maximum, times `scale`."""
    return [scale * np.max(np.stack(layer), axis=0).astype(np.float32) for layer in zip(*(w for w, _ in pairs))]


@pytest.fixture
def toy_rule():
    row = strategies.register(
        strategies.Strategy(
            key="coordinate_max",
            name="Coordinate max",
            label="Máximo por coordenada",
            rule=coordinate_max,
            reference="a toy rule for this test",
            parameters=(strategies.Parameter("scale", "s", 1.0, "s, the factor applied", "--toy-scale"),),
        )
    )
    yield row
    del strategies.REGISTRY[row.key]


def test_a_registered_rule_aggregates_pairs_with_its_default_parameters(toy_rule):
    pairs = [([np.array([1.0, 5.0], np.float32)], 3), ([np.array([4.0, 2.0], np.float32)], 1)]
    assert toy_rule.aggregate(pairs)[0].tolist() == [4.0, 5.0]
    assert toy_rule.aggregate(pairs, {"scale": 2.0})[0].tolist() == [8.0, 10.0]


def test_a_registered_rule_gets_its_cli_option_help_and_checked_value(toy_rule):
    parser = argparse.ArgumentParser()
    strategies.add_parameter_options(parser)
    args = parser.parse_args(["--toy-scale", "3"])
    assert strategies.parameters_from_options(args)["coordinate_max"] == {"scale": 3.0}
    assert "s, the factor applied, for Coordinate max (default: 1)" in " ".join(parser.format_help().split())


def test_a_registered_rule_is_a_multi_round_strategy_with_a_name_and_a_label(toy_rule):
    configured = strategies.parse_spec("coordinate_max:0.5")
    assert configured.name == "coordinate_max:0.5" and configured.values == {"scale": 0.5}
    assert strategies.label_of("coordinate_max:0.5") == "Máximo por coordenada (s = 0.5)"


def test_a_registered_rule_gets_a_column_in_the_tables(toy_rule):
    assert report.rule_labels()["coordinate_max"] == "Máximo por coordenada"


def test_a_registered_rule_runs_in_the_one_shot_comparison(toy_rule, tiny_partition, tmp_path):
    weights_dir, out = tmp_path / "updates", tmp_path / "out"
    weights_dir.mkdir()
    w0, sha = load_initial_weights(tiny_partition)
    counts = read_manifest(tiny_partition)["clients"]
    for cid in (1, 2, 3):
        write_update(
            weights_dir / update_filename(cid),
            client_id=cid,
            num_samples=counts[str(cid)]["num_samples"],
            weights=perturbed(w0, 1e-3, cid),
            mu=0.0,
            epochs=1,
            batch_size=32,
            seed=1,
            initial_weights_sha256=sha,
        )
    comparison = compare(weights_dir, tiny_partition, log=lambda line: None)
    entry = comparison.results["methods"]["coordinate_max"]
    assert entry["status"] == "ok" and entry["label"] == "Máximo por coordenada" and entry["clients"] == [1, 2, 3]
    assert "Coordinate max" in format_table(comparison.results)
    assert "modelo_global_coordinate_max.h5" in write_outputs(out, comparison)
    assert (out / "modelo_global_coordinate_max.h5").stat().st_size > 1_000_000


def test_a_key_or_an_option_already_taken_is_refused(toy_rule):
    with pytest.raises(ValueError, match="registered already"):
        strategies.register(toy_rule)
    clash = strategies.Strategy(
        key="other",
        name="Other",
        label="Otra",
        rule=coordinate_max,
        reference="",
        parameters=(strategies.Parameter("s", "s", 1.0, "s", "--toy-scale"),),
    )
    with pytest.raises(ValueError, match="--toy-scale belongs to another strategy"):
        strategies.register(clash)


@pytest.mark.parametrize("row", list(strategies.REGISTRY.values()), ids=list(strategies.REGISTRY))
def test_every_row_is_complete_and_its_defaults_pass_its_own_checks(row):
    assert row.name and row.label and row.reference
    assert all(p.check(p.default) == p.default for p in row.parameters)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fedsgd", "choose from fedavg"),
        ("fedmed:1", "FedMed takes no parameter"),
        ("fedprox:-1", "μ must be a number at least 0"),
        ("krum:1.5", "f must be an integer at least 0"),
        ("trimmed_mean:0.5", "β must be a number at least 0 and below 0.5"),
    ],
)
def test_a_bad_spec_names_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        strategies.parse_spec(spec)


def test_the_one_shot_rules_give_the_hand_checked_answers():
    pairs = [
        ([np.array([1.0], np.float32)], 1),
        ([np.array([4.0], np.float32)], 2),
        ([np.array([100.0], np.float32)], 1),
    ]
    assert strategies.get("fedavg").aggregate(pairs)[0].tolist() == [27.25]  # (1 + 8 + 100) / 4
    assert strategies.get("fedmed").aggregate(pairs)[0].tolist() == [4.0]
    assert strategies.get("trimmed_mean").aggregate(pairs, {"beta": 0.34})[0].tolist() == [4.0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10**400, True, "x", -1.0, 0.5])
def test_a_parameter_refuses_what_is_no_value_of_it(value):
    beta = strategies.get("trimmed_mean").parameters[0]
    with pytest.raises(ValueError, match="--trim .*: must be a number at least 0 and below 0.5"):
        beta.check(value)
