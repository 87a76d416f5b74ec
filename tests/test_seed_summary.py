"""The summary over seeds: mean ± std, and the paired comparison computed by hand."""

import matplotlib.pyplot as plt
import pytest

from fedmnist.evaluation import log_axis
from fedmnist.history import plot_history
from fedmnist.studies.seed_summary import mean_std, paired, plot_seed_summary, summarize_runs


def test_paired_differences_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.303, half-width 4.303 / √3 = 2.484; t = 2√3, p = 0.0742
    result = paired([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert result["mean"] == 2.0 and result["ci95"] == [-0.48, 4.48]
    assert result["p_value"] == pytest.approx(0.0742, abs=1e-4)


def test_identical_strategies_are_a_tie_without_a_p_value():
    assert paired([97.5, 98.0], [97.5, 98.0]) == {"mean": 0.0, "ci95": [0.0, 0.0], "p_value": None, "n": 2}


def test_mean_std_uses_the_sample_standard_deviation():
    assert mean_std([97.0, 99.0]) == {"mean": 98.0, "std": 1.41, "values": [97.0, 99.0]}


def run(seed, curve):
    drift = {"mean_client_distance": 0.1}
    rows = [{"round": r, "accuracy": a, "loss": 1 - a, "drift": dict(drift)} for r, a in enumerate(curve, 1)]
    return {
        "config": {"seed": seed, "partition_seed": seed, "data": "x", "strategies": ["fedavg"], "num_clients": 5},
        "rounds_completed": len(curve),
        "history": {"fedavg": rows},
        "summary": {"fedavg": {"rounds_to_97": None, "rounds_to_99": None, "seconds": 1.0}},
    }


def test_every_curve_is_kept_and_the_baseline_is_paired_with_each_strategy():
    baselines = [
        {"config": {"epochs": 2}, "epochs": [{"equivalent_round": r, "accuracy": 0.9} for r in (1, 2)], "seconds": 1}
    ] * 2
    summary = summarize_runs([run(1, [0.5, 0.8]), run(2, [0.6, 0.9])], "prueba", baselines)
    fedavg = summary["strategies"]["fedavg"]
    assert fedavg["curves"] == [[50.0, 80.0], [60.0, 90.0]] and fedavg["curve_mean"] == [55.0, 85.0]
    assert fedavg["final_accuracy"]["mean"] == 85.0 and summary["config"]["seeds"] == [1, 2]
    assert summary["paired_final_accuracy"]["fedavg - centralized"]["mean"] == -5.0


def test_the_figures_start_accuracy_at_zero_keep_a_diverging_run_readable_and_leave_the_curves_uncovered():
    diverged = run(2, [0.6, 0.1])
    diverged["history"]["fedavg"][1]["drift"]["mean_client_distance"] = 1e21
    runs = [run(1, [0.95, 0.97]), diverged]
    for name in ("fedprox:0.01", "fedadam:0.01"):
        for result in runs:
            result["history"][name] = result["history"]["fedavg"]
            result["config"]["strategies"].append(name)
            result["summary"][name] = result["summary"]["fedavg"]
    seed_figure = plot_history(diverged, "prueba")
    summary_figure = plot_seed_summary(summarize_runs(runs, "prueba"))
    for figure in (seed_figure, summary_figure):
        accuracy, drift = figure.axes[0], figure.axes[2]
        assert accuracy.get_ylim() == (0, 100) and drift.get_yscale() == "log"
        assert all(ax.get_legend() is None for ax in figure.axes)
        assert [text.get_text() for text in figure.legends[0].get_texts()][-1] == "FedAdam (η_g = 0.01)"


def test_the_final_accuracies_are_a_dot_plot_whose_axis_spans_its_points():
    summary = summarize_runs([run(1, [0.9, 0.975]), run(2, [0.9, 0.985])], "prueba")
    final = plot_seed_summary(summary).axes[1]
    low, high = final.get_xlim()
    assert 90 < low < 97.5 and 98.5 < high < 100 and "recortado" in final.get_xlabel()
    plt.close("all")


def test_the_final_accuracy_axis_stops_at_100_even_when_a_bar_of_one_std_passes_it():
    summary = summarize_runs([run(1, [0.9, 0.1]), run(2, [0.9, 0.99])], "prueba")  # 54.5 ± 62.9
    assert plot_seed_summary(summary).axes[1].get_xlim()[1] == 100
    plt.close("all")


def test_a_log_axis_within_a_decade_labels_its_ticks_as_plain_numbers():
    figure, ax = plt.subplots()
    ax.plot([1, 2], [0.42, 1.1])
    log_axis(ax)
    figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    assert "0.6" in labels and not [label for label in labels if "e" in label]  # "0.6", not "6e−01"
    plt.close(figure)


def test_every_pair_is_compared_as_one_family_on_both_endpoints():
    def two_strategies(seed, shift):
        one = run(seed, [0.9, 0.95, 0.97, 0.98, 0.98 + shift])
        other = run(seed, [0.8, 0.9, 0.95, 0.96, 0.96])["history"]["fedavg"]
        one["config"]["strategies"] = ["fedavg", "fedmed"]
        one["history"]["fedmed"], one["summary"]["fedmed"] = other, dict(one["summary"]["fedavg"])
        return one

    summary = summarize_runs([two_strategies(s, shift) for s, shift in ((1, 0.0), (2, 0.001), (3, 0.002))], "prueba")
    for endpoint in ("final_accuracy", "last_5_rounds_accuracy"):
        verdict = summary["comparisons"][endpoint]["fedavg - fedmed"]
        assert verdict["verdict"] == "better" and verdict["holm_p_value"] < 0.05 < verdict["equivalence_p_value"]
