"""Every run setting of a multi-round run, declared once: its option, symbol, type, bounds, default and Flower key.

The values and the reasons for them live in fedmnist/defaults.py; this table says
what each setting is. From it come:

- the command lines' options (`add_options`: experiments/simulation.py, tools/flower_local.py);
- the checks of RoundSettings (`problem`), which the command lines, the scenario
  files' [run] tables and the tuning grids all go through;
- the Flower run config's keys and checks (fedmnist/flower/settings.py, and
  pyproject.toml's [tool.flwr.app.config], which a test keeps equal to `flower_keys()`);
- the history's config (fedmnist/history.py's run_config records the `recorded` ones by name).
"""

import math
from dataclasses import dataclass

from fedmnist import defaults
from fedmnist.attacks import ATTACKS
from fedmnist.restricted_pickle import printable


@dataclass(frozen=True)
class Setting:
    """One run setting: a row of SETTINGS."""

    name: str  # RoundSettings' field, a scenario's [run] key, the history config's key
    help: str  # the papers' symbol first where there is one
    kind: type  # int, float or str
    default: object  # defaults.py's value; None where it follows from another setting (learning_rate)
    low: float = 1  # numbers: the smallest value allowed (inclusive for int, exclusive for float)
    high: float = math.inf  # numbers: the largest allowed (inclusive)
    choices: tuple = ()  # names: the values allowed
    short: str | None = None  # the one-letter option, as in the papers
    flower: str | None = None  # the Flower run-config key, where the Flower app takes it
    may_be_none: bool = False  # None is a value (no attack)
    aliases: tuple = ()  # more option names
    recorded: bool = True  # the history's config records it: a run with another value is another run

    @property
    def option(self):
        return "--" + self.name.replace("_", "-")

    def allowed(self):
        """The values this setting takes, in words."""
        if self.kind is str:
            return "choose " + " or ".join(self.choices)
        if self.kind is int:
            high = "2^32-1" if self.high == 2**32 - 1 else f"{self.high:,}"
            return f"must be an integer in {self.low:,}..{high}"
        if self.high < math.inf:
            return f"must be in ({self.low:g}, {self.high:g}]"
        return "must be a positive number" if self.low == 0 else f"must be a number above {self.low:g}"

    def problem(self, value, name=None):
        """A message naming the setting if `value` is not allowed, else None; `name` as the user wrote the
        setting ("--epochs" by default, "run config local-epochs=" in the Flower app)."""
        if value is None and self.may_be_none:
            return None
        name = name or self.option
        written = f"{name}{'' if name.endswith('=') else ' '}{printable(repr(value), 40)}"
        if self.kind is str:
            if not isinstance(value, str):
                return f"{written}: not a name"
            return None if value in self.choices else f"{written}: {self.allowed()}"
        if isinstance(value, bool) or not isinstance(value, (int, float) if self.kind is float else int):
            return f"{written}: {'not a number' if self.kind is float else self.allowed()}"
        if self.kind is int:
            return None if self.low <= value <= self.high else f"{written}: {self.allowed()}"
        try:
            number = float(value)
        except OverflowError:  # an integer of hundreds of digits
            number = math.inf
        return None if math.isfinite(number) and self.low < number <= self.high else f"{written}: {self.allowed()}"


SETTINGS = {
    s.name: s
    for s in (
        Setting("rounds", "R, communication rounds", int, defaults.ROUNDS, high=defaults.MAX_ROUNDS, short="-R",
                flower="num-server-rounds", recorded=False),  # a finished run extends to more rounds
        Setting("fraction", "C, fraction of clients sampled per round", float, defaults.FRACTION, low=0, high=1,
                short="-C", flower="fraction-train"),
        Setting("sampling", "fixed: round(C·K) clients a round; poisson: each client independently with probability "
                "C, as DP-FedAvg's accountant assumes", str, defaults.SAMPLING, choices=defaults.SAMPLINGS),
        Setting("epochs", "E, local epochs per round", int, defaults.ROUND_EPOCHS, high=defaults.MAX_EPOCHS,
                short="-E", flower="local-epochs"),
        Setting("batch_size", "B, local batch size", int, defaults.BATCH_SIZE, high=defaults.MAX_BATCH_SIZE,
                short="-B", flower="batch-size"),
        Setting("optimizer", "the local optimizer", str, defaults.OPTIMIZER, choices=tuple(defaults.LEARNING_RATES),
                flower="optimizer"),
        Setting("learning_rate", "η, the local learning rate (default: "
                + ", ".join(f"{lr:g} for {name}" for name, lr in defaults.LEARNING_RATES.items()) + ")",
                float, None, low=0, flower="learning-rate", aliases=("--lr",)),
        Setting("seed", "the seed of the split, client sampling and local training", int, defaults.SEED, low=0,
                high=2**32 - 1, flower="seed"),
        Setting("attack", "simulate M malicious clients with this attack", str, None, choices=ATTACKS,
                may_be_none=True),
        Setting("malicious", "M, malicious clients: the lowest ids (needs --attack)", int, 0,
                low=0, high=defaults.MAX_CLIENTS, short="-M"),
        Setting("trainer", "batched: each round's clients in one computation, in this process; per-client: one "
                "client at a time, here or in --workers processes", str, defaults.TRAINER, choices=defaults.TRAINERS),
        Setting("workers", "worker processes of the per-client trainer, one thread each (0: this process)", int,
                defaults.WORKERS, low=0, high=defaults.MAX_WORKERS, recorded=False),  # no result depends on it
    )
}  # fmt: skip


def add_options(parser, names=tuple(SETTINGS), own=None):
    """Add the options of the settings `names` to an argparse parser. Each defaults to None (the caller fills in
    the scenario's value, then defaults.py's, which the help shows), except those `own` gives ({name: the
    command's own default})."""
    own = own or {}
    for name in names:
        row = SETTINGS[name]
        flags = [row.option, *row.aliases, *([row.short] if row.short else [])]
        shown = own.get(name, row.default)
        extra = {"choices": row.choices} if row.choices else {"type": row.kind}
        help_text = row.help + ("" if shown is None else f" (default: {shown})")
        parser.add_argument(*flags, dest=name, default=own.get(name), help=help_text, **extra)


def flower_keys():
    """The Flower run-config keys of the settings the Flower app takes."""
    return [s.flower for s in SETTINGS.values() if s.flower]
