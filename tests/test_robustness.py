"""The robustness study, end to end on a small real-MNIST partition."""

import json

import pytest

from conftest import run_script
from fedmnist import strategies
from fedmnist.attacks import ATTACKS

pytestmark = pytest.mark.slow


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
