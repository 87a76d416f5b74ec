"""Client drift, measured: how far the round's clients move from the global model, and how they disagree.

Pure NumPy, computed in float64 on flattened weights. For a round that starts from
the global weights w and ends at w', with client k returning w_k and Δ_k = w_k − w:

    client_distance        ‖Δ_k‖ for each client, the distance it drifted from the round's global model
    mean_pairwise_cosine   the mean of cos(Δ_j, Δ_k) over the pairs of clients (1: they agree; 0: orthogonal)
    aggregate_update_norm  ‖w' − w‖, how far the server actually moved

SCAFFOLD's rounds add the norms of its control variates (`control_norms`): the
server's ‖c‖ after the round and the mean ‖cᵢ⁺‖ of the round's clients, to
diagnose a divergence by what grew first.
"""

import numpy as np


def flat_update(weights, reference):
    """weights − reference as one float64 vector."""
    return np.concatenate(
        [(np.asarray(w, np.float64) - np.asarray(r, np.float64)).ravel() for w, r in zip(weights, reference)]
    )


def round_drift(global_weights, client_weights, new_global_weights):
    """The drift of one round (see the module docstring); None where there is no client update to measure."""
    if not client_weights:
        return None
    deltas = np.stack([flat_update(w, global_weights) for w in client_weights])
    norms = np.linalg.norm(deltas, axis=1)
    cosines = None
    if len(deltas) > 1:
        unit = deltas / np.where(norms > 0, norms, 1.0)[:, None]
        gram = unit @ unit.T
        upper = np.triu_indices(len(deltas), k=1)
        cosines = float(np.mean(gram[upper]))
    return {
        "client_distance": [float(n) for n in norms],
        "mean_client_distance": float(np.mean(norms)),
        "mean_pairwise_cosine": cosines,
        "aggregate_update_norm": float(np.linalg.norm(flat_update(new_global_weights, global_weights))),
    }


def control_norms(server_control, client_controls):
    """{"server": ‖c‖, "mean_client": mean ‖cᵢ⁺‖} of one SCAFFOLD round (None where there is no control yet)."""

    def norm(weights):
        return float(np.sqrt(sum(np.sum(np.asarray(w, np.float64) ** 2) for w in weights)))

    return {
        "server": norm(server_control) if server_control else None,
        "mean_client": float(np.mean([norm(c) for c in client_controls])) if client_controls else None,
    }
