"""The robustness study: its summary over seeds by hand, and end to end on a small real-MNIST partition."""

import json

import pytest
from conftest import run_script

from fedmnist import strategies
from fedmnist.attacks import ATTACKS
from fedmnist.robustness import summarize_seeds, write_summary


def a_run(seed, accuracy):
    """One seed's study with every rule at `accuracy` under every attack and M, and local models around it."""
    rules = {row.key: accuracy for row in strategies.noiseless_one_shot_rows()}
    return {
        "attacks": {attack: {m: dict(rules) for m in ("0", "1", "2")} for attack in ATTACKS},
        "loss": {attack: {m: {k: 1 - v for k, v in rules.items()} for m in ("0", "1", "2")} for attack in ATTACKS},
        "local_accuracy": {"1": accuracy - 0.01, "2": accuracy + 0.01},
        "local_loss": {"1": 0.5, "2": 0.3},
        "config": {"num_clients": 5, "malicious_counts": [0, 1, 2], "seed": seed},
    }


def test_summary_over_seeds_gives_mean_and_sample_std_in_percent_and_draws_it(tmp_path):
    summary = summarize_seeds([a_run(1, 0.90), a_run(2, 0.92), a_run(3, 0.94)], [1, 2, 3], seconds=5.0)
    cell = summary["attacks"]["sign_flip"]["2"]["fedavg"]
    assert cell["mean"] == pytest.approx(92.0) and cell["std"] == pytest.approx(2.0)
    assert summary["one_shot"]["local_best"]["values"] == pytest.approx([91.0, 93.0, 95.0])
    assert summary["loss"]["zeros"]["1"]["krum"]["mean"] == pytest.approx(0.08)
    assert summary["one_shot_loss"]["local_best"]["values"] == pytest.approx([0.3] * 3)
    assert summary["one_shot_loss"]["local_mean"]["mean"] == pytest.approx(0.4)
    assert summary["config"]["seeds"] == [1, 2, 3] and "seed" not in summary["config"]
    paths = write_summary(tmp_path, summary)
    assert [p.name for p in paths] == ["semillas.json", "semillas.png"] and all(p.stat().st_size for p in paths)


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
