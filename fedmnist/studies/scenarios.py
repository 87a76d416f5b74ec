"""Named scenarios: data files under experiments/scenarios/, each a delta over fedmnist/defaults.py.

    study = "heterogeneity"           # the study that runs it and reports it: one of STUDIES
    label = "IID"                     # how tables and figures name its partition (Spanish)
    seeds = [42, 43, 44]              # optional: run it once per seed by default (else --seed, one run)
    centralized = false               # optional: skip the centralized baseline of each seed (default true)
    [split]                           # SplitSpec fields (num_clients, partition, ...) and the partition's options
    [run]                             # RoundSettings fields, and strategies = ["fedavg", "fedprox:0.01", ...]
    [tuning]                          # optional: the grid experiments/tune.py runs (fedmnist/studies/tuning.py)

The seed is not part of a scenario's settings: it is an axis (--seed, --seeds).
"""

from dataclasses import dataclass, fields

import tomllib

from fedmnist import partition
from fedmnist.data import SplitSpec
from fedmnist.defaults import PARTITION, RESULTS_DIR, ROUND_STRATEGIES, SCENARIOS_DIR
from fedmnist.partition import PartitionError
from fedmnist.restricted_pickle import printable
from fedmnist.simulation import RoundSettings
from fedmnist.studies import StudyError

SPLIT_KEYS = ({f.name for f in fields(SplitSpec)} - {"seed", "options"}) | set(partition.option_names())
RUN_KEYS = {f.name for f in fields(RoundSettings)} - {"seed"}
TOP_KEYS = ("study", "label", "seeds", "centralized", "split", "run", "tuning")
# The studies a scenario may belong to, each run by the make target of its name (the Makefile lists a study's
# scenarios from this key) and reported in its own tables.
STUDIES = {
    "scenarios": "the course's federation and the paper's FedAvg, once each (make scenarios)",
    "heterogeneity": "every strategy on heterogeneous data, over seeds, with drift (make heterogeneity)",
    "diagnosis": "diagnostics run beside the heterogeneity study, not in its tables (make heterogeneity)",
    "scaffold-diagnosis": "SCAFFOLD's norms round by round (make scaffold-diagnosis)",
    "privacy": "DP-FedAvg against its controls, and leakage (make privacy)",
    "factors": "one setting moved at a time against deriva-dirichlet-k5 (make factors)",
    "study": "tuned on validation, then reported on fresh seeds (make study)",
}


class ScenarioError(StudyError):
    """A scenario file that cannot be used: the message names the file and the key."""


@dataclass(frozen=True)
class Scenario:
    name: str
    study: str  # one of STUDIES
    label: str
    split: dict  # SplitSpec fields except the seed
    run: dict  # RoundSettings fields except the seed
    strategies: tuple
    seeds: tuple = ()  # the seeds it runs over by default; empty: one run with --seed
    centralized: bool = True  # train the centralized baseline beside each seed's run
    tuning: dict | None = None  # the [tuning] table, checked by fedmnist/studies/tuning.py when a tuning runs

    def split_spec(self, seed):
        return SplitSpec.of(seed=seed, **self.split)


def results_dir(name, results=RESULTS_DIR):
    """Where scenario `name` writes its runs (semilla_<s>/ for each seed) and their summary."""
    return results / "simulacion" / name


def names(folder=SCENARIOS_DIR):
    return sorted(path.stem for path in folder.glob("*.toml"))


def of_study(study, folder=SCENARIOS_DIR):
    """The names of the scenarios that state `study`, sorted."""
    return [name for name in names(folder) if load(name, folder).study == study]


def load(name, folder=SCENARIOS_DIR):
    """The scenario `name`; ScenarioError naming the file and the key that is wrong."""
    path = folder / f"{name}.toml"
    if not path.is_file():
        raise ScenarioError(f"scenario {name!r}: no {path}; choose one of {', '.join(names(folder))}")
    try:
        table = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{path}: not valid TOML ({err})") from None
    split, run = table.get("split", {}), dict(table.get("run", {}))
    strategies = run.pop("strategies", ROUND_STRATEGIES)
    if not (isinstance(strategies, (list, tuple)) and strategies and all(isinstance(s, str) for s in strategies)):
        raise ScenarioError(f"{path}: strategies must be a non-empty list of strategy names")
    strategies = tuple(strategies)
    for section, keys, allowed in (("split", split, SPLIT_KEYS), ("run", run, RUN_KEYS)):
        if unknown := set(keys) - allowed:
            raise ScenarioError(
                f"{path}: unknown [{section}] key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(allowed))}"
            )
    seeds = table.get("seeds", [])
    if not (isinstance(seeds, list) and all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds)):
        raise ScenarioError(f"{path}: seeds must be a list of integers in 0..2^32-1")
    study = table.get("study")
    if study not in STUDIES:
        raise ScenarioError(f"{path}: study must be one of {', '.join(STUDIES)}, not {printable(repr(study), 40)}")
    centralized = table.get("centralized", True)
    if not isinstance(centralized, bool):
        raise ScenarioError(f"{path}: centralized must be true or false")
    if unknown := set(table) - set(TOP_KEYS):
        raise ScenarioError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(TOP_KEYS)}")
    tuning = table.get("tuning")
    if tuning is not None and not isinstance(tuning, dict):
        raise ScenarioError(f"{path}: tuning must be a table")
    if problem := settings_problem(split, run):
        raise ScenarioError(f"{path}: {problem}")
    label = str(table.get("label", name))
    return Scenario(name, study, label, split, run, strategies, tuple(seeds), centralized, tuning)


def settings_problem(split, run):
    """The first [split] or [run] value of the wrong type or out of its bounds (RoundSettings.problems, the same
    checks as the command line's), or None."""
    for key in ("num_clients", "train_samples", "test_samples"):
        value = split.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60_000):
            return f"[split] {key} = {printable(repr(value), 40)}: must be an integer in 1..60,000"
    value = split.get("validation_fraction")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"[split] validation_fraction = {printable(repr(value), 40)}: must be a number"
    try:
        partition.get(split.get("partition", PARTITION)).values(
            {k: v for k, v in split.items() if k in partition.option_names()}
        )
    except PartitionError as err:
        return f"[split] {err}"
    return RoundSettings(**run).problems()
