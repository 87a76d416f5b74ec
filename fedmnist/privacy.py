"""Client-level differential privacy: DP-FedAvg's server step and the accountant of the ε it spends.

DP-FedAvg (McMahan et al., 2018), with the server trusted to clip, as in Flower's
server-side wrappers. Each round, every sampled client's update Δᵢ = wᵢ − w is
clipped to norm S, the clipped updates are summed with equal weights, Gaussian
noise of standard deviation z·S is added to every coordinate of the sum, and the
sum is divided by the expected cohort q·N, not by the clients that came:

    w ← w + (Σᵢ Δᵢ·min(1, S/‖Δᵢ‖) + N(0, (z·S)²·I)) / (q·N)

Adding or removing one client changes the sum by at most S, so each round is the
sampled Gaussian mechanism with rate q and noise multiplier z for that adjacency
(a client's whole data in or out). The accountant (`epsilon`) composes the rounds
with Rényi DP (Mironov et al., 2019) through Google's dp-accounting and converts
to ε at a stated δ. The rate q is exact only if every client joins each round
independently with probability q (Poisson sampling: the simulation's
`--sampling poisson`); with q = 1 every client joins every round.

Adaptive clipping (Andrew et al., 2021) moves S toward the γ-quantile of the
update norms: the server also counts the clients whose update was not clipped,
releases that count with noise σ_b, and sets S ← S·exp(−η·(b̃ − γ)), b̃ the noisy
unclipped fraction. So that the round as a whole still has noise multiplier z,
the updates get z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2) (their Theorem 1; the count is of
centred bits bᵢ − ½, sensitivity ½). σ_b = r·q·N with r = 1/20 by default, as
in the paper; z must stay below 2σ_b.

Pure NumPy and dp-accounting; float64 arithmetic, float32 weights out.
"""

import math

import dp_accounting
import numpy as np
from dp_accounting.mechanism_calibration import calibrate_dp_mechanism
from dp_accounting.rdp import RdpAccountant

from fedmnist import seeds
from fedmnist.defaults import DP_DELTA_EXPONENT

CLIP_SLOT = "clip"  # the adaptive step's state: the clipping norm for the next round
RDP_ORDERS = tuple(range(2, 257))  # integer orders: no numerical trouble near 1, tight enough for ε below ~30


def as_float64(weights):
    return [np.asarray(w, np.float64) for w in weights]


def global_norm(arrays):
    """‖·‖₂ of all the arrays as one vector."""
    return math.sqrt(sum(float(np.vdot(a, a)) for a in arrays))


def clip_update(delta, bound):
    """`delta` scaled down to norm at most `bound` (unchanged if already within it), and its original norm."""
    norm = global_norm(delta)
    scale = 1.0 if norm <= bound else bound / norm
    return [d * scale for d in delta], norm


def noisy_clipped_mean(current, pairs, *, clip, update_noise, expected_clients, rng):
    """(the new global weights, each update's norm): the DP-FedAvg average, see the module's docstring.

    `pairs` are (weights, num_examples) as for every rule; the counts are ignored:
    DP-FedAvg weighs clients equally, so none counts for more than S.
    """
    x = as_float64(current)
    total = [np.zeros_like(w) for w in x]
    norms = []
    for weights, _ in pairs:
        clipped, norm = clip_update([w - xi for w, xi in zip(as_float64(weights), x)], clip)
        total = [t + c for t, c in zip(total, clipped)]
        norms.append(norm)
    noisy = [t + rng.normal(0.0, update_noise * clip, size=t.shape) for t in total]
    return [(xi + n / expected_clients).astype(np.float32) for xi, n in zip(x, noisy)], norms


def round_inputs(seed, round_number, expected_clients):
    """What a DP-FedAvg step takes besides the updates: its noise's seed and the expected cohort q·N."""
    return {"noise_seed": seeds.sequence(seed, "dp_noise", round_number), "expected_clients": expected_clients}


def step_inputs(context):
    """round_inputs for a round's strategies.RoundContext: the DP rows' hook."""
    return round_inputs(context.seed, context.round_number, context.expected_clients)


def check_round(pairs, expected_clients):
    if expected_clients <= 0:
        raise ValueError(f"the expected number of clients per round must be positive, not {expected_clients}")
    if not pairs:
        raise ValueError("no update to aggregate")


def dp_fedavg(current, pairs, state, *, noise_seed, expected_clients, noise_multiplier, clip):
    """One DP-FedAvg round with a fixed clipping norm S = `clip`: (new global weights, state unchanged)."""
    check_round(pairs, expected_clients)
    weights, _ = noisy_clipped_mean(
        current,
        pairs,
        clip=clip,
        update_noise=noise_multiplier,
        expected_clients=expected_clients,
        rng=np.random.default_rng(noise_seed),
    )
    return weights, state


def count_noise(expected_clients, count_noise_ratio):
    """σ_b, the noise on the count of unclipped updates: r·q·N."""
    return count_noise_ratio * expected_clients


def update_noise_multiplier(noise_multiplier, count_std):
    """z_Δ such that updates with z_Δ and the centred count with σ_b add up to one mechanism with multiplier z."""
    if noise_multiplier == 0:
        return 0.0
    if noise_multiplier >= 2 * count_std:
        raise ValueError(
            f"noise multiplier {noise_multiplier:g} needs a clipped-count noise above {noise_multiplier / 2:g}, "
            f"not {count_std:g}: raise r (--dp-count-noise) or sample more clients per round"
        )
    return (noise_multiplier**-2 - (2 * count_std) ** -2) ** -0.5


def dp_fedavg_adaptive(
    current,
    pairs,
    state,
    *,
    noise_seed,
    expected_clients,
    noise_multiplier,
    initial_clip,
    target_quantile,
    clip_lr,
    count_noise_ratio,
):
    """One DP-FedAvg round with adaptive clipping: (new global weights, {CLIP_SLOT: [next round's S]})."""
    check_round(pairs, expected_clients)
    clip = current_clip(state, initial_clip)
    rng = np.random.default_rng(noise_seed)
    count_std = count_noise(expected_clients, count_noise_ratio) if noise_multiplier else 0.0
    weights, norms = noisy_clipped_mean(
        current,
        pairs,
        clip=clip,
        update_noise=update_noise_multiplier(noise_multiplier, count_std),
        expected_clients=expected_clients,
        rng=rng,
    )
    centred = sum((norm <= clip) - 0.5 for norm in norms) + rng.normal(0.0, count_std)
    unclipped_fraction = centred / expected_clients + 0.5
    next_clip = clip * math.exp(-clip_lr * (unclipped_fraction - target_quantile))
    return weights, {**state, CLIP_SLOT: [np.asarray(next_clip, np.float64)]}


def problem(values, expected_clients):
    """Why a private row's parameter `values` cannot run with this expected cohort q·N, or None."""
    if "count_noise_ratio" in values:
        try:
            update_noise_multiplier(
                values["noise_multiplier"], count_noise(expected_clients, values["count_noise_ratio"])
            )
        except ValueError as err:
            return str(err)
    return None


def current_clip(state, first):
    """The clipping norm of the coming round: the adaptive step's state, else the `first` one."""
    return float(state[CLIP_SLOT][0]) if CLIP_SLOT in state else float(first)


def clip_norm(state, values):
    """The clipping norm the next round will use, from a DP row's state and parameter values."""
    return current_clip(state, values.get("clip", values.get("initial_clip")))


# ---------------------------------------------------------------------------
# The accountant
# ---------------------------------------------------------------------------


def sampled_gaussian_event(noise_multiplier, sampling_rate, rounds):
    """`rounds` rounds of the sampled Gaussian mechanism, as a dp-accounting event."""
    one_round = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        one_round = dp_accounting.PoissonSampledDpEvent(sampling_rate, one_round)
    return dp_accounting.SelfComposedDpEvent(one_round, rounds)


def new_accountant():
    return RdpAccountant(orders=RDP_ORDERS, neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)


def check_accounting(noise_multiplier, sampling_rate, rounds, delta):
    if not 0 < sampling_rate <= 1:
        raise ValueError(f"sampling rate {sampling_rate}: must be in (0, 1]")
    if not 0 < delta < 1:
        raise ValueError(f"delta {delta}: must be in (0, 1)")
    if rounds < 0 or noise_multiplier < 0:
        raise ValueError("rounds and the noise multiplier must be at least 0")


def delta_for(population):
    """The δ at which ε is reported for a population of N: N^−DP_DELTA_EXPONENT, below 1/N, so that the guarantee
    does not allow one member's data to be released whole. ValueError below N = 2."""
    if isinstance(population, bool) or not isinstance(population, int) or population < 2:
        raise ValueError(f"population {population!r}: must be an integer of at least 2")
    return float(population) ** -DP_DELTA_EXPONENT


def epsilon(noise_multiplier, sampling_rate, rounds, delta):
    """ε at `delta` after `rounds` rounds with multiplier z and Poisson rate q (∞ without noise, 0 before any round)."""
    check_accounting(noise_multiplier, sampling_rate, rounds, delta)
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    accountant = new_accountant()
    accountant.compose(sampled_gaussian_event(noise_multiplier, sampling_rate, rounds))
    return float(accountant.get_epsilon(delta))


def dp_sgd_epsilon(noise_multiplier, batch_size, num_examples, epochs, delta):
    """DP-SGD's ε for one client's data after `epochs` epochs of batches of B from its n examples.

    Each step is counted as the sampled Gaussian mechanism with rate B/n, as if
    each example joined each batch independently; the batches here are a
    shuffled partition of the data instead, the usual approximation (TensorFlow
    Privacy's compute_dp_sgd_privacy makes it too).
    """
    steps = epochs * math.ceil(num_examples / batch_size)
    return epsilon(noise_multiplier, min(1.0, batch_size / num_examples), steps, delta)


def noise_for_epsilon(target_epsilon, sampling_rate, rounds, delta):
    """The smallest noise multiplier z whose `rounds` rounds at rate q spend at most `target_epsilon`."""
    check_accounting(1.0, sampling_rate, rounds, delta)
    if rounds < 1 or target_epsilon <= 0:
        raise ValueError("need at least one round and a positive target ε")
    return float(
        calibrate_dp_mechanism(
            new_accountant,
            lambda z: sampled_gaussian_event(z, sampling_rate, rounds),
            target_epsilon,
            delta,
        )
    )
