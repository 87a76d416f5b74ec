"""The leakage attacks by hand, and the privacy study end to end on a tiny shards split."""

import json

import numpy as np
import pytest
from conftest import run_script

from fedmnist import privacy
from fedmnist.studies import leakage
from fedmnist.studies.privacy_study import LEAKAGE_FILE, leakage_of_run, summarize, write_summary


def test_a_client_holds_the_classes_that_make_up_five_percent_of_its_examples():
    labels = [3] * 60 + [7] * 37 + [1] * 3  # class 1 is 3 %
    assert np.flatnonzero(leakage.held_classes(labels)).tolist() == [3, 7]


def test_the_sign_rule_is_scored_by_exact_sets_precision_recall_and_auc():
    held = np.zeros((2, 10), bool)
    held[0, [1, 2]] = True
    held[1, [5]] = True
    changes = np.full((2, 10), -1.0)
    changes[0, [1, 2]] = [0.5, 0.2]  # client 1: named exactly
    changes[1, [5, 6]] = [0.3, 0.1]  # client 2: one class too many
    scores = leakage.label_inference_scores(held, changes)
    assert scores["exact"] == 0.5 and scores["precision"] == 0.75 and scores["recall"] == 1.0
    assert scores["auc"] == 1.0  # the held classes' changes (0.5, 0.2, 0.3) all rank above the rest (0.1, −1…)


def test_membership_auc_is_one_when_every_member_has_the_lower_loss_and_a_half_when_they_match():
    assert leakage.membership_auc([0.1, 0.2], [0.5, 0.9, 1.0]) == 1.0
    assert leakage.membership_auc([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert leakage.membership_auc([0.3, 0.9], [0.5, 0.1]) == 0.25  # of the 4 pairs only 0.3 < 0.5 is in order


def test_a_locally_noised_update_is_clipped_to_s_then_noised_with_z_times_s():
    delta = [np.full(200_000, 0.01)]  # norm 4.47
    rng = np.random.default_rng(0)
    noised = leakage.locally_noised(delta, clip=2.0, noise_multiplier=0.5, rng=rng)[0]
    clipped = delta[0] * 2.0 / privacy.global_norm(delta)
    assert (noised - clipped).std() == pytest.approx(1.0, rel=0.01)  # z·S
    assert leakage.locally_noised(delta, 2.0, 0.0, rng)[0] == pytest.approx(clipped)


@pytest.mark.slow
def test_the_privacy_study_measures_a_tiny_shards_run(tmp_path):
    data, out = tmp_path / "data", tmp_path / "run"
    split = [
        "--clients",
        "4",
        "--partition",
        "shards",
        "--seed",
        "3",
        "--train-samples",
        "800",
        "--test-samples",
        "200",
    ]
    run_script("split_data.py", *split, "--out", str(data), check=True)
    options = ["--data", str(data), "--out", str(out), "--rounds", "2", "--epochs", "1", "--batch-size", "20"]
    options += ["--optimizer", "sgd", "--sampling", "poisson", "--fraction", "0.75", "--seed", "3"]
    run_script(
        "experiments/simulation.py", *options, "--strategies", "fedavg", "dpfedavg:0", "dpfedavg:0.1", check=True
    )
    found = leakage_of_run(out, workers=1, log=lambda line: None)
    assert json.loads((out / LEAKAGE_FILE).read_text()) == found
    final = found["label_inference"]["final"]
    assert set(final) == {"0", "0.01", "0.1", "1", "10"}
    assert final["0"]["recall"] > 0.5  # shards: a client's two classes show in its update
    auc = found["membership_auc"]
    assert len(auc["local"]) == len(found["config"]["membership_clients"]) and set(auc["global"]) == {
        "fedavg",
        "dpfedavg:0",
        "dpfedavg:0.1",
    }
    run = json.loads((out / "simulacion.json").read_text())
    summary = summarize({"tiny": ("diminuto", [run, run], [found, found])})
    rows = summary["scenarios"]["tiny"]["strategies"]
    assert rows["dpfedavg:0.1"]["noise_std"] == pytest.approx(0.1 * 1.0 / 3.0)  # z·S/(q·N), q·N = 0.75·4
    # ε at δ = K^−1.1 for the K = 4 clients, recomputed from z, q and R whatever δ the history recorded
    assert rows["dpfedavg:0.1"]["epsilon"] == pytest.approx(privacy.epsilon(0.1, 0.75, 2, 4**-1.1))
    clip_only = [100 * r["history"]["dpfedavg:0"][-1]["accuracy"] for r in (run, run)]
    noised = [100 * r["history"]["dpfedavg:0.1"][-1]["accuracy"] for r in (run, run)]
    assert rows["dpfedavg:0.1"]["minus_clip_only"]["mean"] == pytest.approx(noised[0] - clip_only[0], abs=0.01)
    assert "minus_clip_only" not in rows["dpfedavg:0"] and "minus_clip_only" not in rows["fedavg"]
    assert rows["dpfedavg:0"]["epsilon"] is None and "epsilon" not in rows["fedavg"]
    written = write_summary(summary, tmp_path / "privacidad")
    assert all(path.stat().st_size > 1000 for path in written)


def test_non_members_follow_the_members_class_proportions():
    pool = np.repeat(np.arange(10), 100)
    members = np.array([3] * 30 + [7] * 10)  # three quarters threes, a quarter sevens
    chosen = leakage.class_matched(pool, members, 40, np.random.default_rng(0))
    assert np.bincount(pool[chosen], minlength=10).tolist() == [0, 0, 0, 30, 0, 0, 0, 10, 0, 0]
    assert len(set(chosen.tolist())) == 40


def test_tpr_at_one_percent_fpr_counts_members_below_the_non_members_first_percentile():
    nonmembers = np.linspace(1.0, 2.0, 101)  # the 1 % quantile is 1.01
    members = np.array([0.5, 1.0, 1.005, 1.5])
    assert leakage.tpr_at_fpr(members, nonmembers) == 0.75


def test_within_class_auc_sees_through_a_split_where_the_class_alone_gives_members_away():
    # Members are all digit 0 at loss 0.1 or 0.3; non-members digit 0 at the same losses and digit 1 at loss 2:
    # over all images the attack looks strong, within digit 0 it is a coin toss; digit 1 has no members to count
    members, member_labels = [0.1, 0.3] * 10, [0] * 20
    others, other_labels = [0.1, 0.3] * 10 + [2.0] * 20, [0] * 20 + [1] * 20
    assert leakage.membership_auc(members, others) == 0.75
    assert leakage.within_class_auc(members, member_labels, others, other_labels) == 0.5
    assert leakage.within_class_auc(members, member_labels, others, other_labels, min_examples=21) is None
