"""The tuned study's tables and verdict figure, rendered from a results folder built by hand."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from fedmnist.history import PARTIAL_FILE, RESULTS_FILE
from fedmnist.studies import report, tuning
from fedmnist.studies.centralized import BASELINE_FILE
from fedmnist.studies.seed_summary import PRIMARY_ENDPOINT, VERDICT_FIGURE, plot_verdicts, write_seed_summary
from fedmnist.studies.significance import compare_family, oriented

SCENARIO = "estudio-dirichlet-k5"  # a scenario of the tuned study: its label comes from its file
SEEDS = [201, 202, 203, 204, 205]
NOISE = [0.0, 0.1, -0.1, 0.05, -0.05]  # per seed, in points: FedAvg's spread around its mean


def run(seed, finals):
    """One seed's merged run: each strategy's curve climbs to its final accuracy (points) over 5 rounds."""
    history, summary = {}, {}
    for name, final in finals.items():
        curve = [(final - 5 + r) / 100 for r in range(1, 6)]
        drift = {"mean_client_distance": 0.1}
        history[name] = [{"round": r, "accuracy": a, "drift": drift} for r, a in enumerate(curve, 1)]
        summary[name] = {"rounds_to_97": None, "rounds_to_99": None, "seconds": 1.0}
    config = {"seed": seed, "strategies": list(finals), "num_clients": 5, "fraction": 1.0, "epochs": 1}
    return {"config": config, "rounds_completed": 5, "history": history, "summary": summary}


def tuned_results(tmp_path):
    """results/ajuste/<scenario>/: a grid (FedAvg's η chosen at its upper edge) and a report over five seeds where
    FedAdam beats FedAvg by a point on every seed and FedProx matches it to a hundredth."""
    runs = [
        run(seed, {"fedavg": 96 + noise, "fedprox:0.01": 96 + noise + 0.01 * (-1) ** i, "fedadam:0.01": 97 + noise})
        for i, (seed, noise) in enumerate(zip(SEEDS, NOISE))
    ]
    folder = tuning.results_dir(SCENARIO, tmp_path)
    write_seed_summary(folder, runs, "prueba (ajustado)", verdicts=True)

    def grid(points, chosen):
        scored = [{"setting": p, "validation_scores": [s], "validation_score": s} for p, s in points]
        return {"chosen": chosen, "grid": scored}

    found = {
        "strategies": {
            "fedavg": grid([({"learning_rate": 0.1}, 0.95), ({"learning_rate": 0.2}, 0.96)], {"learning_rate": 0.2}),
            "fedprox": grid([({"learning_rate": 0.2, "mu": 0.01}, 0.96)], {"learning_rate": 0.2, "mu": 0.01}),
            "fedadam": grid(
                [({"learning_rate": 0.1, "server_lr": s}, v) for s, v in ((0.003, 0.9), (0.01, 0.97), (0.03, 0.5))],
                {"learning_rate": 0.1, "server_lr": 0.01},
            ),
        }
    }
    (folder / tuning.TUNING_FILE).write_text(json.dumps(found))
    return tmp_path


def rows_of(table):
    return [line.split(" | ") for line in table.splitlines()[2:]]


def test_a_setting_is_written_with_the_papers_symbols_the_server_rate_as_eta_g():
    assert report.setting_text("fedavgm", {"learning_rate": 0.1, "server_lr": 1.0, "momentum": 0.5}) == (
        "η = 0.1, η_g = 1, β = 0.5"
    )
    assert report.setting_text("fedprox", {"learning_rate": 0.2, "mu": 0.01}) == "η = 0.2, μ = 0.01"


def test_a_choice_at_the_edge_of_its_grid_is_flagged_and_a_single_value_is_not(tmp_path):
    rows = rows_of(report.tuning_table(tuned_results(tmp_path)))
    by_strategy = {row[1]: row for row in rows}
    assert by_strategy["FedAvg"][3:] == ["η = 0.2", "96.00", "η", "— |"]  # 0.2 is the largest η tried
    assert by_strategy["FedProx"][2:] == ["1", "η = 0.2, μ = 0.01", "96.00", "—", "η, μ |"]  # one point: not tuned
    assert by_strategy["FedAdam"][2:] == ["3", "η = 0.1, η_g = 0.01", "97.00", "—", "η |"]


def test_each_strategy_is_compared_with_fedavg_in_the_family_of_every_pair(tmp_path):
    rows = rows_of(report.tuned_study_table(tuned_results(tmp_path)))
    by_strategy = {row[1]: row for row in rows}
    assert by_strategy["FedAvg (η = 0.2)"][4:] == ["—", "—", "referencia |"]
    fedadam = by_strategy["FedAdam (η = 0.1, η_g = 0.01)"]
    assert fedadam[0] == "| Dirichlet α = 0.1, K = 5 (5 semillas)"
    assert fedadam[2:4] == ["95.00 ± 0.08", "97.00 ± 0.08"]  # the last 5 rounds climb to the last
    low, high = (float(x) for x in fedadam[5].strip("[]").split(", "))
    assert fedadam[4] == "+1.00" and low == high == 1.0 and fedadam[6] == "mejor |"  # one point on every seed
    assert by_strategy["FedProx (η = 0.2, μ = 0.01)"][6] == "equivalente |"


def test_the_highest_mean_is_compared_with_every_other_strategy(tmp_path):
    rows = rows_of(report.tuned_best_table(tuned_results(tmp_path)))
    assert [row[1] for row in rows] == [
        "FedAdam (η = 0.1, η_g = 0.01) − FedAvg",
        "FedAdam (η = 0.1, η_g = 0.01) − FedProx (μ = 0.01)",
    ]
    assert [row[4] for row in rows] == ["mejor |", "mejor |"]


def test_without_results_each_table_says_which_command_makes_them(tmp_path):
    for table in (report.tuning_table, report.tuned_study_table, report.tuned_best_table, report.study_compute_table):
        assert "(sin resultados: `make study`)" in table(tmp_path)


def test_a_pair_read_the_other_way_round_turns_its_intervals_and_its_word():
    family = compare_family({"a - b": ([1.0, 2.0, 3.0, 2.5, 1.5], [0.0, 0.1, 0.2, 0.0, 0.1])})
    turned = oriented(family, "b", "a")
    stored = family["a - b"]
    assert turned["mean"] == -stored["mean"] and stored["verdict"] == "better" and turned["verdict"] == "worse"
    assert turned["ci95"] == [-stored["ci95"][1], -stored["ci95"][0]]
    assert turned["holm_interval"] == [-stored["holm_interval"][1], -stored["holm_interval"][0]]


def test_the_verdict_figure_shows_zero_the_margin_and_one_interval_per_strategy(tmp_path):
    folder = tuning.results_dir(SCENARIO, tuned_results(tmp_path))
    assert (folder / VERDICT_FIGURE).is_file()
    summary = json.loads((folder / "resumen.json").read_text())
    figure = plot_verdicts(summary)
    ax = figure.axes[0]
    low, high = ax.get_xlim()
    assert low < -summary["comparisons"][PRIMARY_ENDPOINT]["fedavg - fedprox:0.01"]["margin"] and high > 1.0
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["FedProx (μ = 0.01)", "FedAdam (η_g = 0.01)"]
    assert len(ax.containers) == 2  # one error bar per strategy against FedAvg
    plt.close(figure)


def test_a_diverged_seed_turns_the_verdict_axis_logarithmic_so_the_other_intervals_stay_readable(tmp_path):
    runs = [run(seed, {"fedavg": 96 + noise, "fedprox:0.01": 96.2 + noise}) for seed, noise in zip(SEEDS, NOISE)]
    calm = plot_verdicts(write_seed_summary(tmp_path / "a", runs, "prueba")[0])
    runs[2] = run(SEEDS[2], {"fedavg": 96.0, "fedprox:0.01": 10.0})  # FedProx diverges on one seed
    wild = plot_verdicts(write_seed_summary(tmp_path / "b", runs, "prueba")[0])
    assert calm.axes[0].get_xscale() == "linear" and wild.axes[0].get_xscale() == "symlog"
    assert "logarítmica fuera" in wild.axes[0].get_xlabel()
    plt.close(calm)
    plt.close(wild)


@pytest.mark.parametrize("broken", ["{}", "[1, 2]", "not json"])
def test_a_broken_study_summary_names_the_command_that_rewrites_it(tmp_path, broken):
    results = tuned_results(tmp_path)
    (tuning.results_dir(SCENARIO, results) / "resumen.json").write_text(broken)
    with pytest.raises(report.seed_summary.SummaryError, match="experiments/tune.py --scenario estudio-dirichlet-k5"):
        report.tuned_study_table(results)


def test_noise_free_seeds_give_the_hand_computed_interval():
    # a constant one-point gap on every seed: zero spread, so the interval collapses onto the mean
    family = compare_family({"a - b": (np.full(5, 97.0), np.full(5, 96.0))})
    assert family["a - b"]["holm_interval"] == [1.0, 1.0] and family["a - b"]["verdict"] == "better"


def test_the_compute_table_sums_the_seconds_of_finished_runs_and_not_of_one_in_progress(tmp_path):
    results = tuned_results(tmp_path)
    folder = tuning.results_dir(SCENARIO, results)

    def finished(where, seconds_per_round, rounds=3):
        where.mkdir(parents=True)
        history = {"fedavg": [{"round": r, "seconds": seconds_per_round} for r in range(1, rounds + 1)]}
        (where / RESULTS_FILE).write_text(json.dumps({"config": {}, "history": history}))

    finished(folder / "fedavg" / "learning_rate=0.1" / "semilla_1201", 600.0)  # 0.5 h
    finished(folder / "fedavg" / "learning_rate=0.2" / "semilla_1201", 1200.0)  # 1 h
    finished(folder / tuning.REPORT_DIR / "fedavg" / "semilla_201", 2400.0)  # 2 h
    in_progress = folder / tuning.REPORT_DIR / "fedadam" / "semilla_201"
    in_progress.mkdir(parents=True)
    (in_progress / PARTIAL_FILE).write_text("{}")
    baseline = folder / tuning.REPORT_DIR / tuning.BASELINES_DIR / "semilla_201"
    baseline.mkdir(parents=True)
    (baseline / BASELINE_FILE).write_text(json.dumps({"config": {}, "epochs": 20, "seconds": 1800.0}))

    assert tuning.compute_spent(folder) == {"tuning": (2, 1.5), "report": (1, 2.0), "baselines": (1, 0.5)}
    [row] = rows_of(report.study_compute_table(results))
    assert row[1:] == ["2 · 1.5", "1 de 15 · 2.0", "1 de 5 · 0.5", "4.0 |"]  # 3 strategies × 5 seeds needed
