"""The robustness study: its summary over seeds by hand, and end to end on a small real-MNIST partition."""

import json

import pytest
from conftest import run_script

from fedmnist import strategies
from fedmnist.attacks import ATTACKS
from fedmnist.studies.robustness import summarize_seeds, write_summary


def a_run(seed, accuracy, attacks=True):
    """One seed's study: every rule at `accuracy` under every attack and M, local models around it, FedProx at the
    course's μ 0.2 points below FedAvg with Adam and level with it under SGD, McNemar's p-values of 0.01 against
    FedAvg."""
    rules = {row.key: accuracy for row in strategies.noiseless_one_shot_rows()}
    metrics = {key: {"accuracy": v, "loss": 1 - v, "validation_accuracy": v} for key, v in rules.items()}
    behind = {"accuracy": accuracy - 0.002, "loss": 0.5, "validation_accuracy": accuracy}
    local = {
        "1": {"accuracy": accuracy - 0.01, "loss": 0.5, "validation_accuracy": 0.99},
        "2": {"accuracy": accuracy + 0.01, "loss": 0.3, "validation_accuracy": 0.98},
    }
    run = {
        "one_round": {
            "rules": metrics,
            "local": local,
            "local_best": {"client": 1, **local["1"]},  # chosen on validation, not the best on test
            "mcnemar_against_fedavg": {
                key: {"p_value": 0.01 if key == "krum" else 0.5} for key in [*rules, "local_best"] if key != "fedavg"
            },
            "contrast": {
                "mu": 0.01,
                "adam": {"fedavg": metrics["fedavg"], "fedprox": behind},
                "sgd": {
                    key: {"accuracy": 0.9, "loss": 0.3, "validation_accuracy": 0.9} for key in ("fedavg", "fedprox")
                },
            },
        },
        "config": {"num_clients": 5, "malicious_counts": [0, 1, 2], "seed": seed},
    }
    if attacks:
        run["attacks"] = {attack: {m: dict(rules) for m in ("0", "1", "2")} for attack in ATTACKS}
        run["loss"] = {attack: {m: {k: 1 - v for k, v in rules.items()} for m in ("0", "1", "2")} for attack in ATTACKS}
    return run


def test_summary_over_seeds_gives_mean_and_sample_std_in_percent_and_draws_it(tmp_path):
    runs = [a_run(1, 0.90), a_run(2, 0.92), a_run(3, 0.94, attacks=False)]
    summary = summarize_seeds(runs, [1, 2, 3], seconds=5.0)
    assert summary["one_shot"]["fedavg"]["mean"] == pytest.approx(92.0) and summary["one_shot"]["fedavg"]["std"] == 2
    # the best local model is the one best on validation (client 1), not the one best on test
    assert summary["one_shot"]["local_best"]["values"] == pytest.approx([89.0, 91.0, 93.0])
    assert summary["one_shot_loss"]["local_mean"]["mean"] == pytest.approx(0.4)
    assert summary["one_shot"]["fedprox_sgd_contrast"]["values"] == pytest.approx([90.0] * 3)
    assert "fedavg_adam_contrast" not in summary["one_shot"]  # the course's FedAvg is the fedavg row
    # attacks only over the seeds that ran them
    assert summary["config"]["attack_seeds"] == [1, 2] and summary["attacks"]["sign_flip"]["2"]["fedavg"]["values"] == [
        pytest.approx(90.0),
        pytest.approx(92.0),
    ]
    assert summary["config"]["seeds"] == [1, 2, 3] and "seed" not in summary["config"]
    paths = write_summary(tmp_path, summary)
    assert [p.name for p in paths] == ["semillas.json", "semillas.png"] and all(p.stat().st_size for p in paths)


def test_fedprox_gap_under_adam_against_sgd_is_a_family_of_three():
    # FedProx 0.2 points below FedAvg in every seed with Adam, level with SGD: the gap differs by exactly 0.2
    runs = [a_run(seed, 0.9 + 0.01 * seed) for seed in range(4)]
    family = summarize_seeds(runs, list(range(4)), 1.0)["comparisons"]["fedprox_local_optimizer"]
    assert list(family) == ["fedprox - fedavg (adam)", "fedprox - fedavg (sgd)", "gap with adam - gap with sgd"]
    assert family["gap with adam - gap with sgd"]["mean"] == pytest.approx(-0.2)
    assert family["fedprox - fedavg (sgd)"]["mean"] == 0


def test_mcnemar_counts_seeds_whose_holm_correction_still_rejects():
    runs = [a_run(seed, 0.9) for seed in range(3)]
    mcnemar = summarize_seeds(runs, [0, 1, 2], 1.0)["mcnemar_against_fedavg"]
    # 8 tests per seed (7 rules and the best local model): 0.01 · 8 = 0.08, not below 0.05 after Holm
    assert mcnemar["krum"]["p_values"] == [0.01] * 3 and mcnemar["krum"]["seeds_rejected_after_holm"] == 0


@pytest.mark.slow
def test_study_writes_every_attack_strategy_and_m(tmp_path):
    data, out = tmp_path / "data", tmp_path / "results"
    run_script(
        "split_data.py",
        "--clients",
        "5",
        "--seed",
        "3",
        "--out",
        str(data),
        "--train-samples",
        "1000",
        "--test-samples",
        "300",
        check=True,
    )
    run_script("experiments/robustness.py", "--data", str(data), "--out", str(out), "--epochs", "1", check=True)
    results = json.loads((out / "robustez.json").read_text())
    assert set(results["attacks"]) == set(ATTACKS)
    for rows in results["attacks"].values():
        assert set(rows) == {"0", "1", "2"}
        assert set(rows["0"]) == {row.key for row in strategies.noiseless_one_shot_rows()}
    # A sign-flipping attacker ruins FedAvg far more than the coordinate-wise median.
    lost = results["points_lost"]["sign_flip"]["1"]
    assert lost["fedavg"] > lost["fedmed"]
    assert (out / "robustez.png").stat().st_size > 20_000
