"""The strategy registry: which aggregation strategies exist, their names, parameters and defaults.

One row per strategy. The CLIs build their choices, options and help from it; the
tables and figures take its labels; the Flower ServerApp takes its Flower class and
keyword names; the tests iterate over it. Adding a strategy is its rule in
fedmnist/aggregation.py, one `register(Strategy(...))` here, and its tests.

A rule takes the updates as (weights, num_examples) pairs, as Flower's aggregate
functions do, plus the strategy's server-side parameters as keywords. A parameter
marked `client_side` is not the rule's: it changes local training (FedProx's mu),
so the simulation and the Flower app send it to the clients, and the one-shot
comparison reads the μ each client declared in its update: FedProx's row is
labelled with it, a _fedprox update declaring μ = 0 is refused, and differing
values are noted (fedmnist/comparison.py).

A row with a `server_step` instead takes the round's global model, the updates
and a state it keeps across rounds: a server optimizer's step from FedAvg's
aggregate (fedmnist/server_optimizers.py), SCAFFOLD's (fedmnist/scaffold.py) and
DP-FedAvg's (clipping and noise relative to the global model, fedmnist/privacy.py).
What such a row adds to a round is two small hooks, which the engines call
without asking which strategy they run:

- `round_inputs(RoundContext)`: the step's keywords besides the updates (DP-FedAvg's
  noise seed and expected cohort, SCAFFOLD's control deltas and client counts);
- `client_correction(server state, client's state, global weights)`: what each
  client adds to its gradients (SCAFFOLD's c − cᵢ); its clients then keep a state
  cᵢ, send the new one with their model, and the step receives the deltas.

`private` rows report the ε they spent. The rows whose step needs earlier rounds
are `multi_round_only`: the one-shot comparison leaves them out. DP-FedAvg runs in
both: in one shot, its reference is the initial global model and every client
takes part (q = 1).
"""

import math
from dataclasses import dataclass, field
from typing import Callable

from fedmnist import aggregation, privacy, scaffold, server_optimizers
from fedmnist.defaults import DP_CLIP, MU
from fedmnist.restricted_pickle import printable


@dataclass(frozen=True)
class Parameter:
    """One parameter of a strategy, with the paper's symbol and its default."""

    name: str  # the rule's keyword, and the key in results
    symbol: str  # as in the paper, for labels: μ, β, f
    default: float
    help: str
    option: str  # the CLI option, and (without the dashes) the Flower run-config key
    kind: type = float
    low: float = 0.0  # smallest allowed value
    below: float = math.inf  # values must be strictly below this
    high: float = math.inf  # values may be at most this
    flower_kwarg: str | None = None  # the Flower strategy's keyword for it
    client_side: bool = False

    @property
    def config_key(self):
        return self.option.lstrip("-")

    def check(self, value):
        """`value` as this parameter's type; ValueError naming the option if it cannot be one."""
        try:
            converted = self.kind(value)
            valid = (converted == value or isinstance(value, str)) and not isinstance(value, bool)
            valid = valid and math.isfinite(converted) and self.low <= converted < self.below <= math.inf
            valid = valid and converted <= self.high
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
            valid = False
        if not valid:
            raise ValueError(f"{self.option} {printable(value, 39)}: must be {self.allowed()}")
        return converted

    def allowed(self):
        """The values this parameter takes, in words."""
        upper = "" if math.isinf(self.below) else f" and below {self.below:g}"
        upper += "" if math.isinf(self.high) else f" and at most {self.high:g}"
        return f"a{'n integer' if self.kind is int else ' number'} at least {self.low:g}{upper}"


@dataclass(frozen=True)
class RoundContext:
    """What a round's server step may take besides the updates; the engine fills it, a row's round_inputs picks."""

    seed: int
    round_number: int
    expected_clients: float  # q·N, the cohort a round expects
    num_clients: int = 0  # N
    total_examples: int = 0  # every client's examples
    state_deltas: list = field(default_factory=list)  # [(new client state − old, nᵢ)] of the clients that sent one


@dataclass(frozen=True)
class Strategy:
    """One aggregation strategy: a registry row."""

    key: str  # in file names (modelo_global_<key>.h5), results and CLI choices
    name: str  # English, for CLI output
    label: str  # Spanish, for figures, tables and the essay
    rule: Callable | None  # (pairs, **server-side parameters) -> weights; None for a row with a server step
    reference: str
    parameters: tuple = ()
    # one-shot: aggregate the _fedprox updates (trained with mu) instead of the plain ones
    fedprox_updates: bool = False
    flower: str | None = None  # the class in flwr.serverapp.strategy that runs it in the Flower app
    notes: Callable | None = field(default=None, compare=False)  # (num_updates, **parameters) -> a note for the results
    # (global weights, pairs, state, **round inputs, **server-side parameters) -> (new global weights, new state)
    server_step: Callable | None = field(default=None, compare=False)
    multi_round_only: bool = False  # the step needs earlier rounds: the one-shot comparison leaves the row out
    private: bool = False  # DP-FedAvg: the run reports the ε it spent
    # hooks (see the module's docstring): (RoundContext) -> the step's keywords; (server state, client state,
    # global weights) -> each client's gradient correction
    round_inputs: Callable | None = field(default=None, compare=False)
    client_correction: Callable | None = field(default=None, compare=False)
    local_optimizer: str | None = None  # the one local optimizer the strategy is defined for (None: any)

    def defaults(self):
        return {p.name: p.default for p in self.parameters}

    @property
    def keeps_client_state(self):
        """Its clients keep a state across rounds (SCAFFOLD's cᵢ) and send the new one with their model."""
        return self.client_correction is not None

    def inputs(self, context):
        """The keywords its step takes besides the updates, for the round `context` describes."""
        return self.round_inputs(context) if self.round_inputs else {}

    def server_parameters(self, values):
        return {p.name: values[p.name] for p in self.parameters if not p.client_side}

    def aggregate(self, pairs, values=None):
        """Apply the rule of a row without a server step to [(weights, num_examples)]; `values` overrides defaults."""
        return self.rule(pairs, **self.server_parameters({**self.defaults(), **(values or {})}))

    def step(self, pairs, current, state, values=None, **round_inputs):
        """One round's server update from the global weights `current`: (new global weights, new state).

        `pairs` are the round's updates as [(weights, num_examples)]; `values`
        overrides the defaults of the parameters. A row without a server step
        returns its rule's aggregate and `state` unchanged; `round_inputs` are what
        a step needs besides (SCAFFOLD's control_deltas and num_clients, DP-FedAvg's
        noise_seed and expected_clients).
        """
        if self.server_step is None:
            return self.aggregate(pairs, values), state
        parameters = self.server_parameters({**self.defaults(), **(values or {})})
        return self.server_step(current, pairs, state, **round_inputs, **parameters)

    def privacy_spent(self, values, sampling_rate, rounds, population, state=None):
        """A private row's record after `rounds` rounds at Poisson rate q over `population` clients: the clipping
        norm S of the last one (`state` its state before it) and the ε spent at δ = N^−1.1 (privacy.delta_for;
        None without noise: no guarantee). None for the other rows."""
        if not self.private:
            return None
        values = {**self.defaults(), **(values or {})}
        delta = privacy.delta_for(population) if population >= 2 else None  # one client: no one to hide among
        spent = privacy.epsilon(values["noise_multiplier"], sampling_rate, rounds, delta) if delta else math.inf
        return {
            "clip": privacy.clip_norm(state or {}, values),
            "epsilon": spent if math.isfinite(spent) else None,
            "delta": delta,
        }

    def describe(self, values=None, short=False):
        """The strategy with its parameter values, as a label: FedProx (μ = 0.01); `short`: the first one only."""
        values = {**self.defaults(), **(values or {})}
        if not self.parameters:
            return self.label
        shown = self.parameters[:1] if short else self.parameters
        return f"{self.label} (" + ", ".join(f"{p.symbol} = {values[p.name]:g}" for p in shown) + ")"


REGISTRY = {}


def register(strategy):
    """Add a row; its key and its CLI options must be new."""
    if strategy.key in REGISTRY:
        raise ValueError(f"strategy {strategy.key!r} is registered already")
    taken = {p.option for row in REGISTRY.values() for p in row.parameters}
    if clash := taken & {p.option for p in strategy.parameters}:
        raise ValueError(f"strategy {strategy.key!r}: option {', '.join(sorted(clash))} belongs to another strategy")
    REGISTRY[strategy.key] = strategy
    return strategy


def one_shot_rows():
    """The rows the one-shot comparison and the robustness study apply: those without a server state."""
    return [row for row in REGISTRY.values() if not row.multi_round_only]


def noiseless_one_shot_rows():
    """The one-shot rows without DP's noise: the rules the robustness study compares (the privacy study has DP's)."""
    return [row for row in one_shot_rows() if not row.private]


def one_shot(row, pairs, reference, values, seed, num_clients):
    """A one-shot row's global weights from one round of updates, `reference` the initial global model.

    A private row takes every one of the `num_clients` clients as its cohort (q = 1)
    and draws its noise from `seed`.
    """
    inputs = row.inputs(RoundContext(seed, 1, num_clients, num_clients))
    weights, _ = row.step(pairs, reference, {}, values, **inputs)
    return weights


def get(key):
    """The row for `key`, or ValueError listing the registered ones."""
    if key not in REGISTRY:
        raise ValueError(f"unknown strategy {key!r}: choose from {', '.join(REGISTRY)}")
    return REGISTRY[key]


def all_parameters(client_side=None, flower_only=False):
    """Every registered parameter as (strategy, parameter): optionally only the client- or server-side ones, or
    only those of the strategies the Flower app runs."""
    return [
        (row, p)
        for row in REGISTRY.values()
        for p in row.parameters
        if (client_side is None or p.client_side == client_side) and (row.flower or not flower_only)
    ]


def add_parameter_options(parser, client_side=None, flower_only=False):
    """One argparse option per registered parameter, with the paper's symbol and the default in its help."""
    group = parser.add_argument_group("strategy parameters")
    for row, p in all_parameters(client_side, flower_only):
        group.add_argument(
            p.option,
            type=p.kind,
            default=p.default,
            dest=option_dest(p),
            help=f"{p.help}, for {row.name} (default: {p.default:g})",
        )


def option_dest(parameter):
    return parameter.config_key.replace("-", "_")


def parameters_from_options(args, client_side=None, flower_only=False):
    """{strategy key: {parameter: value}} from parsed options, each value checked."""
    values = {}
    for row, p in all_parameters(client_side, flower_only):
        values.setdefault(row.key, {})[p.name] = p.check(getattr(args, option_dest(p)))
    return values


@dataclass(frozen=True)
class Configured:
    """A strategy with its parameter values, as a multi-round run uses it: fedavg, fedprox:0.01, ..."""

    strategy: Strategy
    values: dict

    @property
    def name(self):
        """The name in results: the key, then the first parameter's value if the strategy has one."""
        if not self.strategy.parameters:
            return self.strategy.key
        first = self.strategy.parameters[0]
        return f"{self.strategy.key}:{self.values[first.name]:g}"

    @property
    def mu(self):
        """The proximal weight local training uses for this strategy (0 unless it has a client-side mu)."""
        return float(self.values.get("mu", 0.0))

    def step(self, pairs, current, state, **round_inputs):
        return self.strategy.step(pairs, current, state, self.values, **round_inputs)

    def label(self, short=False):
        return self.strategy.describe(self.values, short)


def parse_spec(spec, values=None):
    """'key' or 'key:value' (the value sets the strategy's first parameter) -> Configured.

    `values` ({key: {parameter: value}}, say from the CLI options) gives the other parameters.
    """
    key, colon, text = spec.partition(":")
    if key not in REGISTRY:
        raise ValueError(f"strategy {spec!r}: choose from {', '.join(REGISTRY)} (a value may follow: fedprox:0.01)")
    row = REGISTRY[key]
    chosen = {**row.defaults(), **(values or {}).get(key, {})}
    if colon:
        if not row.parameters:
            raise ValueError(f"strategy {spec!r}: {row.name} takes no parameter")
        first = row.parameters[0]
        try:
            chosen[first.name] = first.check(text)
        except ValueError:
            raise ValueError(
                f"strategy {spec!r}: {first.symbol} must be {first.allowed()}, as in {key}:{first.default:g}"
            ) from None
    return Configured(row, chosen)


def label_of(name, short=False):
    """The Spanish label of a result name such as 'fedprox:0.01' (the name itself if no row matches).

    `short`, for figures: only the parameter the name sets, FedAdam (η_g = 0.01); the tables give them all.
    """
    try:
        return parse_spec(name).label(short)
    except ValueError:
        return name


# ---------------------------------------------------------------------------
# The rows
# ---------------------------------------------------------------------------

register(
    Strategy(
        key="fedavg",
        name="FedAvg",
        label="FedAvg",
        rule=aggregation.fedavg,
        flower="FedAvg",
        reference="McMahan et al., 2017: the mean of the updates weighted by their example counts",
    )
)
register(
    Strategy(
        key="fedprox",
        name="FedProx",
        label="FedProx",
        rule=aggregation.fedavg,
        flower="FedProx",
        fedprox_updates=True,
        reference="Li et al., 2020: local loss + mu/2·‖w − w⁰‖², then FedAvg's weighted mean",
        parameters=(
            Parameter(
                "mu", "μ", MU, "mu, FedProx's proximal weight", "--mu", flower_kwarg="proximal_mu", client_side=True
            ),
        ),
    )
)
register(
    Strategy(
        key="fedmed",
        name="FedMed",
        label="FedMed",
        rule=aggregation.fedmed,
        flower="FedMedian",
        reference="Yin et al., 2018: the coordinate-wise median",
    )
)
register(
    Strategy(
        key="trimmed_mean",
        name="Trimmed mean",
        label="Media recortada",
        rule=aggregation.trimmed_mean,
        flower="FedTrimmedAvg",
        reference="Yin et al., 2018: the coordinate-wise β-trimmed mean",
        parameters=(
            Parameter(
                "beta", "β", 0.2, "beta, the fraction trimmed from each side", "--trim", below=0.5, flower_kwarg="beta"
            ),
        ),
        notes=lambda k, beta: f"beta={beta:g}, {int(beta * k)} trimmed per side",
    )
)
register(
    Strategy(
        key="krum",
        name="Krum",
        label="Krum",
        rule=aggregation.krum,
        flower="Krum",
        reference="Blanchard et al., 2017: the update closest to its K − f − 2 nearest neighbours",
        parameters=(
            Parameter(
                "f",
                "f",
                1,
                "f, the Byzantine clients Krum tolerates",
                "--krum-f",
                kind=int,
                flower_kwarg="num_malicious_nodes",
            ),
        ),
        notes=lambda k, f: f"f={f}",
    )
)

register(
    Strategy(
        key="multikrum",
        name="Multi-Krum",
        label="Multi-Krum",
        rule=lambda pairs, f, m: aggregation.krum(pairs, f, m or len(pairs) - f),
        reference="Blanchard et al., 2017: the mean of the m updates with the lowest Krum scores",
        parameters=(
            Parameter("f", "f", 1, "f, the Byzantine clients Multi-Krum tolerates", "--multikrum-f", kind=int),
            Parameter("m", "m", 0, "m, the updates averaged (0: K − f)", "--multikrum-m", kind=int),
        ),
        notes=lambda k, f, m: f"f={f}, m={m or k - f}",
    )
)
register(
    Strategy(
        key="bulyan",
        name="Bulyan",
        label="Bulyan",
        rule=aggregation.bulyan,
        reference="El Mhamdi et al., 2018: Krum chooses K − 2f updates, then the coordinate-wise mean of the "
        "K − 4f values closest to their median",
        parameters=(
            Parameter("f", "f", 1, "f, the Byzantine clients Bulyan tolerates (K ≥ 4f + 3)", "--bulyan-f", kind=int),
        ),
        notes=lambda k, f: f"f={f}",
    )
)
register(
    Strategy(
        key="centered_clipping",
        name="Centered clipping",
        label="Recorte centrado",
        rule=None,
        server_step=lambda current, pairs, state, tau, iterations: (
            aggregation.centered_clipping(current, pairs, tau, iterations),
            state,
        ),
        reference="Karimireddy et al., 2021: each update's distance from the global model clipped to τ, "
        "then averaged, L times",
        parameters=(
            Parameter("tau", "τ", 0.0, "tau, the clipping radius (0: the median distance of the round)", "--cc-tau"),
            Parameter("iterations", "L", 1, "L, the clipping iterations", "--cc-iterations", kind=int, low=1),
        ),
    )
)

# Multi-round only: a server step with state across rounds (Reddi et al., 2021, for the defaults of the adaptive ones)


def after_fedavg(server_step):
    """A step taking (global weights, pairs, state, ...) from one taking FedAvg's aggregate of the pairs instead."""

    def step(current, pairs, state, **inputs):
        return server_step(current, aggregation.fedavg(pairs), state, **inputs)

    return step


def adaptive_parameters(prefix):
    """FedAdam's and FedYogi's parameters (Reddi et al., 2021), under options named after `prefix`."""
    return (
        Parameter(
            "server_lr", "η_g", 0.01, "eta, the server learning rate", f"--{prefix}-lr", low=1e-12, flower_kwarg="eta"
        ),
        Parameter(
            "beta1", "β₁", 0.9, "beta1, the first moment's decay", f"--{prefix}-beta1", below=1, flower_kwarg="beta_1"
        ),
        Parameter(
            "beta2", "β₂", 0.99, "beta2, the second moment's decay", f"--{prefix}-beta2", high=1, flower_kwarg="beta_2"
        ),
        Parameter("tau", "τ", 1e-3, "tau, the adaptivity", f"--{prefix}-tau", low=1e-12, flower_kwarg="tau"),
    )


register(
    Strategy(
        key="fedavgm",
        name="FedAvgM",
        label="FedAvgM",
        rule=None,
        server_step=after_fedavg(server_optimizers.fedavgm),
        multi_round_only=True,
        flower="FedAvgM",
        reference="Hsu et al., 2019: server momentum on the pseudo-gradient w − FedAvg(updates)",
        parameters=(
            Parameter(
                "momentum",
                "β",
                0.9,
                "beta, the server momentum",
                "--fedavgm-momentum",
                below=1,
                flower_kwarg="server_momentum",
            ),
            Parameter(
                "server_lr",
                "η_g",
                1.0,
                "eta, the server learning rate",
                "--fedavgm-lr",
                low=1e-12,
                flower_kwarg="server_learning_rate",
            ),
        ),
    )
)
register(
    Strategy(
        key="fedadam",
        name="FedAdam",
        label="FedAdam",
        rule=None,
        server_step=after_fedavg(server_optimizers.fedadam),
        multi_round_only=True,
        flower="FedAdam",
        reference="Reddi et al., 2021: Adam on the server, the pseudo-gradient FedAvg(updates) − w",
        parameters=adaptive_parameters("fedadam"),
    )
)
register(
    Strategy(
        key="fedyogi",
        name="FedYogi",
        label="FedYogi",
        rule=None,
        server_step=after_fedavg(server_optimizers.fedyogi),
        multi_round_only=True,
        flower="FedYogi",
        reference="Reddi et al., 2021: Yogi on the server, the pseudo-gradient FedAvg(updates) − w",
        parameters=adaptive_parameters("fedyogi"),
    )
)
register(
    Strategy(
        key="scaffold",
        name="SCAFFOLD",
        label="SCAFFOLD",
        rule=None,
        server_step=scaffold.server_step,
        multi_round_only=True,
        round_inputs=scaffold.round_inputs,
        client_correction=scaffold.correction,
        local_optimizer="sgd",  # cᵢ⁺ = cᵢ − c + (x − yᵢ)/(K·η) is the mean gradient only for plain SGD steps
        reference="Karimireddy et al., 2020: local gradients corrected by c − cᵢ, the control variates",
        parameters=(
            Parameter("server_lr", "η_g", 1.0, "eta_g, SCAFFOLD's global step size", "--scaffold-lr", low=1e-12),
            Parameter(
                "weighted",
                "w",
                0,
                "1: the model and c averaged by example counts; 0: the paper's uniform means",
                "--scaffold-weighted",
                kind=int,
                high=1,
            ),
        ),
    )
)

# Client-level differential privacy (McMahan et al., 2018; Andrew et al., 2021): fedmnist/privacy.py


def noise_parameter(option, flower_kwarg="noise_multiplier"):
    return Parameter(
        "noise_multiplier",
        "z",
        1.0,
        "z, the noise multiplier: the noise on the sum of clipped updates has standard deviation z·S",
        option,
        high=1_000.0,  # z: above, the noise is a thousand times the clipped update; the accountant overflows at 1e300
        flower_kwarg=flower_kwarg,
    )


register(
    Strategy(
        key="dpfedavg",
        name="DP-FedAvg",
        label="DP-FedAvg",
        rule=None,
        server_step=privacy.dp_fedavg,
        private=True,
        round_inputs=privacy.step_inputs,
        flower="DifferentialPrivacyServerSideFixedClipping",
        reference="McMahan et al., 2018: updates clipped to S, summed with N(0, (z·S)²) noise, over the cohort q·N",
        parameters=(
            noise_parameter("--dp-noise"),
            Parameter(
                "clip",
                "S",
                DP_CLIP,
                "S, the clipping norm of each update",
                "--dp-clip",
                low=1e-12,
                flower_kwarg="clipping_norm",
            ),
        ),
    )
)
register(
    Strategy(
        key="dpfedavg_adaptive",
        name="DP-FedAvg (adaptive clipping)",
        label="DP-FedAvg adaptativo",
        rule=None,
        server_step=privacy.dp_fedavg_adaptive,
        private=True,
        round_inputs=privacy.step_inputs,
        flower="DifferentialPrivacyServerSideAdaptiveClipping",
        reference="Andrew et al., 2021: DP-FedAvg with S moved toward the γ-quantile of the update norms",
        parameters=(
            noise_parameter("--dp-adaptive-noise"),
            Parameter(
                "initial_clip",
                "S₀",
                DP_CLIP,
                "S0, the first round's clipping norm",
                "--dp-initial-clip",
                low=1e-12,
                flower_kwarg="initial_clipping_norm",
            ),
            Parameter(
                "target_quantile",
                "γ",
                0.5,
                "gamma, the fraction of updates left unclipped",
                "--dp-quantile",
                high=1,
                flower_kwarg="target_clipped_quantile",
            ),
            Parameter(
                "clip_lr",
                "η_C",
                0.2,
                "eta_C, the clipping norm's learning rate",
                "--dp-clip-lr",
                low=1e-12,
                flower_kwarg="clip_norm_lr",
            ),
            Parameter(
                "count_noise_ratio",
                "r",
                0.05,
                "r, the clipped count's noise per expected client (sigma_b = r·q·N)",
                "--dp-count-noise",
                low=1e-12,
            ),
        ),
    )
)
