"""The factors study on made-up summaries: each level read from its source, each point paired with its reference."""

import json

import pytest

from fedmnist.studies import StudyError, factors, report
from fedmnist.studies.seed_summary import SUMMARY_FILE

SEEDS = [42, 43, 44]


def summary(finals, epochs=1, rounds=20, seeds=SEEDS, num_clients=5):
    """A resumen.json with only what the study reads: {strategy: final accuracy per seed}."""
    parameters = {name: {"mu": float(name.split(":")[1])} for name in finals if name.startswith("fedprox:")}
    config = {"seeds": seeds, "rounds": rounds, "epochs": epochs, "num_clients": num_clients, "parameters": parameters}
    return {
        "config": config,
        "strategies": {name: {"final_accuracy": {"values": values}} for name, values in finals.items()},
    }


SUMMARIES = {
    "deriva-dirichlet-k5": summary(
        {
            "fedavg": [97.0, 98.0, 96.0],
            "fedprox:0.01": [97.5, 98.0, 96.0],
            "fedmed": [90.0, 92.0, 94.0],
            "scaffold:1": [97.0, 98.0, 11.0],
            "fedadam:0.01": [98.0, 98.5, 97.0],
        }
    ),
    "factores-alfa-1": summary(
        {"fedavg": [98.0, 98.0, 98.0], "fedprox:0.01": [98.0, 98.0, 98.0], "fedmed": [97.0, 96.0, 95.0]}
    ),
    "factores-k20": summary({"fedavg": [96.0, 97.0, 95.0], "fedmed": [80.0, 85.0, 87.0]}, num_clients=20),
    "factores-mu": summary({"fedprox:0.1": [97.0, 98.5, 97.0], "fedprox:1": [95.0, 96.0, 94.0]}),
    "factores-e5": summary({"fedavg": [93.0, 95.0, 92.0], "fedprox:0.01": [94.0, 95.0, 93.0]}, epochs=5, rounds=4),
}


def write_summaries(results_dir, summaries):
    for name, content in summaries.items():
        folder = results_dir / "simulacion" / name
        folder.mkdir(parents=True)
        (folder / SUMMARY_FILE).write_text(json.dumps(content))


@pytest.fixture
def study(tmp_path):
    write_summaries(tmp_path, SUMMARIES)
    return factors.summarize(factors.read_summaries(factors.all_scenarios(), tmp_path))


def rows(study, key):
    return {(row["level"], row["strategy"]): row for row in study["factors"][key]["rows"]}


def test_alpha_reads_each_level_from_its_scenario_and_pairs_each_rule_with_fedavg_at_that_alpha(study):
    alpha = rows(study, "alpha")
    assert sorted({level for level, _ in alpha}) == [0.1, 1.0]
    assert {name for _, name in alpha} == {"fedavg", "fedprox:0.01", "fedmed"} and len(alpha) == 6
    fedmed = alpha[(1.0, "fedmed")]["difference"]
    assert fedmed["mean"] == pytest.approx(-2.0)  # (97 − 98, 96 − 98, 95 − 98) / 3
    assert fedmed["ci95"][0] < -2.0 < fedmed["ci95"][1]
    assert alpha[(0.1, "fedavg")]["is_reference"] and not alpha[(1.0, "fedmed")]["is_reference"]
    assert alpha[(1.0, "fedmed")]["against"] == "FedAvg, α = 1"
    fedavg = alpha[(1.0, "fedavg")]  # α's own effect: FedAvg against FedAvg at α = 0.1
    assert fedavg["difference"]["mean"] == pytest.approx(1.0) and fedavg["against"] == "FedAvg, α = 0.1"


def test_clients_reads_k_from_the_run_and_pairs_each_rule_with_fedavg_at_that_k(study):
    clients = rows(study, "clients")
    assert sorted(clients) == [(5, "fedavg"), (5, "fedmed"), (20, "fedavg"), (20, "fedmed")]
    assert clients[(20, "fedmed")]["difference"]["mean"] == pytest.approx(-12.0)  # (80 − 96, 85 − 97, 87 − 95) / 3
    assert clients[(5, "fedmed")]["difference"]["mean"] == pytest.approx(-5.0)  # (90 − 97, 92 − 98, 94 − 96) / 3
    fedavg = clients[(20, "fedavg")]  # K's own effect: (96 − 97, 97 − 98, 95 − 96) / 3
    assert fedavg["difference"]["mean"] == pytest.approx(-1.0) and fedavg["against"] == "FedAvg, K = 5"
    assert clients[(20, "fedmed")]["against"] == "FedAvg, K = 20" and clients[(5, "fedavg")]["is_reference"]


def test_mu_is_one_series_from_fedavg_at_zero_against_fedavg(study):
    mu = study["factors"]["mu"]["rows"]
    assert [row["level"] for row in mu] == [0.0, 0.01, 0.1, 1.0]
    assert [row["strategy"] for row in mu] == ["fedavg", "fedprox:0.01", "fedprox:0.1", "fedprox:1"]
    by_level = {row["level"]: row for row in mu}
    assert by_level[0.0]["is_reference"] and by_level[0.01]["difference"]["mean"] == pytest.approx(0.5 / 3, abs=0.005)
    assert by_level[1.0]["difference"]["mean"] == pytest.approx(-2.0)  # (95 − 97, 96 − 98, 94 − 96) / 3
    assert by_level[0.1]["difference"]["mean"] == pytest.approx(0.5)  # (0, 0.5, 1) / 3
    assert by_level[1.0]["against"] == "FedAvg, μ = 0"


def test_local_epochs_are_paired_with_the_same_rule_at_one_epoch_and_twenty_rounds(study):
    epochs = rows(study, "epochs")
    assert sorted(epochs) == [(1, "fedavg"), (1, "fedprox:0.01"), (5, "fedavg"), (5, "fedprox:0.01")]
    assert epochs[(5, "fedprox:0.01")]["rounds"] == 4
    difference = epochs[(5, "fedprox:0.01")]["difference"]["mean"]
    assert difference == pytest.approx((-3.5 - 3 - 3) / 3, abs=0.005)  # (94, 95, 93) against (97.5, 98, 96)
    assert epochs[(1, "fedavg")]["is_reference"] and not epochs[(5, "fedavg")]["is_reference"]
    assert factors.level_text("epochs", epochs[(5, "fedavg")]) == "E = 5, R = 4"
    assert epochs[(5, "fedprox:0.01")]["against"] == "FedProx (μ = 0.01), E = 1, R = 20"


def test_a_factor_whose_runs_have_not_all_finished_is_pending_and_the_others_are_summarized(study, tmp_path):
    results_dir = tmp_path / "partial"
    write_summaries(results_dir, {k: v for k, v in SUMMARIES.items() if k != "factores-e5"})
    partial = factors.summarize(factors.read_summaries(factors.all_scenarios(), results_dir))
    assert partial["factors"] == {key: study["factors"][key] for key in ("alpha", "clients", "mu")}
    assert partial["pending"] == {
        "epochs": {"symbol": "E", "label": factors.FACTORS["epochs"].label, "missing": ["factores-e5"]}
    }
    assert study["pending"] == {}
    figure = factors.plot_factors(partial)
    assert len(figure.axes) == 3 and figure.get_suptitle().endswith("; E pendiente")


def test_the_table_has_a_row_per_point_and_one_per_pending_factor(tmp_path, monkeypatch):
    results_dir = tmp_path / "partial"
    write_summaries(results_dir, {k: v for k, v in SUMMARIES.items() if k != "factores-e5"})
    partial = factors.summarize(factors.read_summaries(factors.all_scenarios(), results_dir))
    monkeypatch.setattr(factors, "SUMMARY_JSON", tmp_path / "factores.json")
    factors.SUMMARY_JSON.write_text(json.dumps(partial))
    lines = report.factors_table().splitlines()[2:]
    assert len(lines) == 6 + 4 + 4 + 1
    assert [line.split(" | ")[0] for line in lines] == ["| α"] * 6 + ["| K"] * 4 + ["| μ"] * 4 + ["| E"]
    assert "pendiente: falta `factores-e5`" in lines[-1]


def test_with_no_factor_complete_the_error_names_the_command_that_runs_a_missing_scenario(tmp_path):
    write_summaries(tmp_path, {"deriva-dirichlet-k5": SUMMARIES["deriva-dirichlet-k5"]})
    with pytest.raises(StudyError, match="no factor has all its runs yet; .*--scenario factores-alfa-1 --resume"):
        factors.summarize(factors.read_summaries(factors.all_scenarios(), tmp_path))


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"config": {}}', "\udcff"])
def test_a_damaged_summary_is_named_with_the_command_that_rewrites_it(tmp_path, content):
    write_summaries(tmp_path, SUMMARIES)
    (tmp_path / "simulacion" / "factores-k20" / SUMMARY_FILE).write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(
        StudyError, match="factores-k20/resumen.json: not a summary .*--scenario factores-k20 --resume"
    ):
        factors.read_summaries(factors.all_scenarios(), tmp_path)


def test_scenarios_run_over_other_seeds_cannot_be_paired(tmp_path):
    write_summaries(tmp_path, {**SUMMARIES, "factores-mu": summary({"fedprox:1": [1.0, 2.0]}, seeds=[1, 2])})
    with pytest.raises(StudyError, match="different seeds"):
        factors.read_summaries(factors.all_scenarios(), tmp_path)


def test_the_figure_has_a_dot_plot_per_factor(study):
    figure = factors.plot_factors(study)
    assert [ax.get_xlabel() for ax in figure.axes] == [f.label for f in factors.FACTORS.values()]
    mu_ticks = [tick.get_text() for tick in figure.axes[list(factors.FACTORS).index("mu")].get_xticklabels()]
    assert mu_ticks == ["0", "0.01", "0.1", "1"]
