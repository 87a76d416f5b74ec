"""Drift measures on hand-made updates whose answers can be checked by eye."""

import numpy as np
import pytest

from fedmnist.drift import control_norms, round_drift


def weights(*values):
    return [np.array(values, dtype=np.float32)]


def test_distances_are_each_clients_update_norm():
    drift = round_drift(weights(0.0, 0.0), [weights(3.0, 4.0), weights(0.0, 1.0)], weights(1.5, 2.5))
    assert drift["client_distance"] == [5.0, 1.0]
    assert drift["mean_client_distance"] == 3.0


def test_opposite_updates_have_cosine_minus_one_and_the_server_does_not_move():
    drift = round_drift(weights(1.0, 1.0), [weights(2.0, 1.0), weights(0.0, 1.0)], weights(1.0, 1.0))
    assert drift["mean_pairwise_cosine"] == pytest.approx(-1.0)
    assert drift["aggregate_update_norm"] == 0.0


def test_the_mean_cosine_averages_every_pair():
    # Δ = (1, 0), (0, 1), (1, 0): pairs give 0, 1, 0
    clients = [weights(1.0, 0.0), weights(0.0, 1.0), weights(1.0, 0.0)]
    assert round_drift(weights(0.0, 0.0), clients, weights(0.0, 0.0))["mean_pairwise_cosine"] == pytest.approx(1 / 3)


def test_one_client_has_no_pairwise_cosine_and_no_clients_no_drift():
    assert round_drift(weights(0.0), [weights(2.0)], weights(2.0))["mean_pairwise_cosine"] is None
    assert round_drift(weights(0.0), [], weights(0.0)) is None


def test_control_norms_of_a_scaffold_round():
    server = [np.array([3.0, 4.0])]  # ‖c‖ = 5
    clients = [[np.array([0.0, 1.0])], [np.array([0.0, 3.0])]]  # ‖cᵢ⁺‖ = 1 and 3
    assert control_norms(server, clients) == {"server": 5.0, "mean_client": 2.0}
    assert control_norms(None, []) == {"server": None, "mean_client": None}
