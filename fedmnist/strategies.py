"""The strategy registry: which aggregation strategies exist, their names, parameters and defaults.

One row per strategy. The CLIs build their choices, options and help from it; the
tables and figures take its labels; the Flower ServerApp takes its Flower class and
keyword names; the tests iterate over it. Adding a strategy is its rule in
fedmnist/aggregation.py, one `register(Strategy(...))` here, and its tests.

A rule takes the updates as (weights, num_examples) pairs, as Flower's aggregate
functions do, plus the strategy's server-side parameters as keywords. A parameter
marked `client_side` is not the rule's: it changes local training (FedProx's mu),
so the simulation and the Flower app send it to the clients, and the one-shot
comparison reads the value each client used from its update.

A row with a `server_step` keeps a state across rounds: the rule's aggregate is
then only the input of a server optimizer's step from the round's global model
(fedmnist/server_optimizers.py), and SCAFFOLD (`control_variates`) also needs
every client's control variate (fedmnist/scaffold.py). Such rows are
multi-round only: the one-shot comparison leaves them out.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

from fedmnist import aggregation, scaffold, server_optimizers
from fedmnist.defaults import MU


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
        except (TypeError, ValueError, OverflowError):
            valid = False
        if not valid or not (
            math.isfinite(converted) and self.low <= converted < self.below and converted <= self.high
        ):
            raise ValueError(f"{self.option} {value}: must be {self.allowed()}")
        return converted

    def allowed(self):
        """The values this parameter takes, in words."""
        upper = "" if math.isinf(self.below) else f" and below {self.below:g}"
        upper += "" if math.isinf(self.high) else f" and at most {self.high:g}"
        return f"a{'n integer' if self.kind is int else ' number'} at least {self.low:g}{upper}"


@dataclass(frozen=True)
class Strategy:
    """One aggregation strategy: a registry row."""

    key: str  # in file names (modelo_global_<key>.h5), results and CLI choices
    name: str  # English, for CLI output
    label: str  # Spanish, for figures, tables and the essay
    rule: Callable  # (pairs, **server-side parameters) -> weights
    reference: str
    parameters: tuple = ()
    # one-shot: aggregate the _fedprox updates (trained with mu) instead of the plain ones
    fedprox_updates: bool = False
    flower: str | None = None  # the class in flwr.serverapp.strategy that runs it in the Flower app
    notes: Callable | None = field(default=None, compare=False)  # (num_updates, **parameters) -> a note for the results
    # (global weights, aggregate, state, **server-side parameters) -> (new global weights, new state)
    server_step: Callable | None = field(default=None, compare=False)
    control_variates: bool = False  # SCAFFOLD: clients train with c − cᵢ and send Δcᵢ with their model
    local_optimizer: str | None = None  # the one local optimizer the strategy is defined for (None: any)

    @property
    def multi_round_only(self):
        """Whether the strategy needs state from earlier rounds (the one-shot comparison leaves it out)."""
        return self.server_step is not None

    def defaults(self):
        return {p.name: p.default for p in self.parameters}

    def server_parameters(self, values):
        return {p.name: values[p.name] for p in self.parameters if not p.client_side}

    def aggregate(self, pairs, values=None):
        """Apply the rule to [(weights, num_examples)]; `values` overrides the defaults of the parameters.

        For a row with a server step, the rule takes none of them: they are the step's.
        """
        values = {**self.defaults(), **(values or {})}
        return self.rule(pairs, **({} if self.server_step else self.server_parameters(values)))

    def step(self, pairs, current, state, values=None, **round_inputs):
        """One round's server update from the global weights `current`: (new global weights, new state).

        Stateless rows return their aggregate and `state` unchanged; `round_inputs`
        are what a stateful step needs besides (SCAFFOLD's control_deltas, num_clients).
        """
        aggregate = self.aggregate(pairs, values)
        if self.server_step is None:
            return aggregate, state
        values = {**self.defaults(), **(values or {})}
        return self.server_step(current, aggregate, state, **round_inputs, **self.server_parameters(values))

    def describe(self, values=None):
        """The strategy with its parameter values, as a label: FedProx (μ = 0.01)."""
        values = {**self.defaults(), **(values or {})}
        if not self.parameters:
            return self.label
        return f"{self.label} (" + ", ".join(f"{p.symbol} = {values[p.name]:g}" for p in self.parameters) + ")"


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

    def aggregate(self, pairs):
        return self.strategy.aggregate(pairs, self.values)

    def step(self, pairs, current, state, **round_inputs):
        return self.strategy.step(pairs, current, state, self.values, **round_inputs)

    def label(self):
        return self.strategy.describe(self.values)


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


def label_of(name):
    """The Spanish label of a result name such as 'fedprox:0.01' (the name itself if no row matches)."""
    try:
        return parse_spec(name).label()
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

# Multi-round only: a server step with state across rounds (Reddi et al., 2021, for the defaults of the adaptive ones)


def adaptive_parameters(prefix):
    """FedAdam's and FedYogi's parameters (Reddi et al., 2021), under options named after `prefix`."""
    return (
        Parameter(
            "server_lr", "η", 0.01, "eta, the server learning rate", f"--{prefix}-lr", low=1e-12, flower_kwarg="eta"
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
        rule=aggregation.fedavg,
        server_step=server_optimizers.fedavgm,
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
                "η",
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
        rule=aggregation.fedavg,
        server_step=server_optimizers.fedadam,
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
        rule=aggregation.fedavg,
        server_step=server_optimizers.fedyogi,
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
        rule=aggregation.fedavg,
        server_step=scaffold.server_step,
        control_variates=True,
        local_optimizer="sgd",  # cᵢ⁺ = cᵢ − c + (x − yᵢ)/(K·η) is the mean gradient only for plain SGD steps
        reference="Karimireddy et al., 2020: local gradients corrected by c − cᵢ, the control variates",
        parameters=(
            Parameter("server_lr", "η_g", 1.0, "eta_g, SCAFFOLD's global step size", "--scaffold-lr", low=1e-12),
        ),
    )
)
