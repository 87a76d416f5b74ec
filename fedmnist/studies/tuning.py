"""Tuning on validation: each strategy's declared grid, run on tuning seeds, scored on validation accuracy.

A scenario declares its grid in a [tuning] table:

    [tuning]
    seeds = [1001]                      # tuning seeds: never a seed the scenario reports
    rounds = 20                         # R while tuning (at least the LAST_ROUNDS the score averages)
    learning_rate = [0.02, 0.05, 0.1]   # the client η, for every strategy
    [tuning.grid]                       # each strategy's own values (its registry parameters)
    fedprox = { mu = [0.001, 0.01, 0.1] }
    fedavgm = { server_lr = [0.3, 1.0], beta = [0.0, 0.9] }

Every point (a client η × one value of each of the strategy's listed parameters)
runs that strategy alone on each tuning seed, checkpointed every round, so an
interrupted tuning continues where it stopped. A point's score is its validation
accuracy averaged over the last LAST_ROUNDS rounds, then over the tuning seeds;
the test set plays no part. The chosen setting of each strategy is its best point
(the first in grid order on a tie), recorded with the whole grid.
"""

import dataclasses
import itertools
import json

import numpy as np

from fedmnist import strategies
from fedmnist.data import ensure_split
from fedmnist.defaults import RESULTS_DIR
from fedmnist.files import project_relative, write_text_atomically
from fedmnist.history import (
    LAST_ROUNDS,
    PARTIAL_FILE,
    RESULTS_FILE,
    load_state,
    new_history,
    same_run,
    save_state,
    write_results,
)
from fedmnist.simulation import Federation, RoundSettings, history_config, run_rounds
from fedmnist.studies import StudyError
from fedmnist.studies.centralized import BASELINE_FILE, read_baseline, train_centralized, write_baseline
from fedmnist.studies.seed_summary import write_seed_summary

TUNING_DIR, TUNING_FILE = "ajuste", "ajuste.json"


def results_dir(name, results=RESULTS_DIR):
    """Where scenario `name`'s tuning lives (TUNING_FILE and a folder of runs per strategy), and its report."""
    return results / TUNING_DIR / name


TUNING_KEYS = ("seeds", "rounds", "learning_rate", "grid")


def checked_tuning(tuning, scenario):
    """`tuning` (a scenario's [tuning] table) checked; StudyError naming the key that cannot work."""
    where = f"scenario {scenario.name!r} [tuning]"
    if unknown := set(tuning) - set(TUNING_KEYS):
        raise StudyError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(TUNING_KEYS)}")
    seeds, rounds = tuning.get("seeds"), tuning.get("rounds")
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds)):
        raise StudyError(f"{where}: seeds must be a non-empty list of integers in 0..2^32-1")
    if reported := set(seeds) & set(scenario.seeds):
        raise StudyError(f"{where}: seeds {sorted(reported)} are also the seeds the scenario reports")
    if not (isinstance(rounds, int) and rounds >= LAST_ROUNDS):
        raise StudyError(f"{where}: rounds must be an integer of at least {LAST_ROUNDS}, the rounds the score averages")
    rates = tuning.get("learning_rate", [])
    if not (isinstance(rates, list) and all(isinstance(r, (int, float)) and r > 0 for r in rates)):
        raise StudyError(f"{where}: learning_rate must be a list of positive numbers")
    grid = tuning.get("grid", {})
    for key, values in grid.items():
        if key not in {strategies.parse_spec(s).strategy.key for s in scenario.strategies}:
            raise StudyError(f"{where}: grid.{key} is not one of the scenario's strategies")
        row = strategies.get(key)
        for name, options in values.items():
            if name == "learning_rate":
                if not (
                    isinstance(options, list)
                    and options
                    and all(isinstance(r, (int, float)) and r > 0 for r in options)
                ):
                    raise StudyError(f"{where}: grid.{key}.learning_rate must be a non-empty list of positive numbers")
                continue
            parameter = next((p for p in row.parameters if p.name == name), None)
            if parameter is None or not isinstance(options, list) or not options:
                raise StudyError(f"{where}: grid.{key}.{name} must be a non-empty list for a parameter of {key}")
            for option in options:
                try:
                    parameter.check(option)
                except ValueError as err:
                    raise StudyError(f"{where}: grid.{key}.{name}: {err}") from None
    return {"seeds": seeds, "rounds": rounds, "learning_rate": rates, "grid": grid}


def grid_points(key, tuning, default_learning_rate):
    """Every point of strategy `key`'s grid: [{"learning_rate": η, parameter: value, ...}], in grid order."""
    own = dict(tuning["grid"].get(key, {}))
    rates = own.pop("learning_rate", None) or tuning["learning_rate"] or [default_learning_rate]
    names = list(own)
    return [
        {"learning_rate": rate, **dict(zip(names, values))}
        for rate in rates
        for values in itertools.product(*(own[name] for name in names))
    ]


def point_folder(point):
    """A point's folder name: its settings, in order (learning_rate=0.05,mu=0.01)."""
    return ",".join(f"{name}={value:g}" for name, value in point.items())


def run_point(scenario, spec, point, seed, data, out, log, rounds=None, runtime="tuning"):
    """One point of strategy `spec` on one seed (R: the tuning's rounds unless `rounds`), continued from its last
    checkpoint: its finished results."""
    base = RoundSettings(**{**scenario.run, "seed": seed})
    rounds = rounds or scenario.tuning["rounds"]
    settings = dataclasses.replace(base, learning_rate=point["learning_rate"], rounds=rounds)
    scenario_values = strategies.parse_spec(spec)
    key = scenario_values.strategy.key
    values = {**scenario_values.values, **{name: value for name, value in point.items() if name != "learning_rate"}}
    configured = [strategies.parse_spec(key, {key: values})]
    manifest = ensure_split(data, scenario.split_spec(seed), log=log, replace=True)  # the tuning's own folder
    config = history_config(
        settings, manifest, configured, runtime=runtime, scenario=scenario.name, data=project_relative(data)
    )
    if (out / RESULTS_FILE).is_file():
        results = json.loads((out / RESULTS_FILE).read_text())
        if same_run(results.get("config"), config) and results.get("rounds_completed") == settings.rounds:
            return results
    results, states = load_state(out, config) if (out / PARTIAL_FILE).is_file() else (new_history(config), None)
    out.mkdir(parents=True, exist_ok=True)
    federation = Federation.load(data, manifest)
    results, _ = run_rounds(
        federation, configured, settings, results, states, on_round=lambda done, now: save_state(out, done, now)
    )
    what = "ajuste" if runtime == "tuning" else "estudio"
    write_results(out, results, f"{scenario.label}: {what} de {key}, {point_folder(point)}, semilla {seed}")
    return results


def score(results):
    """The validation accuracy averaged over the last rounds (fedmnist.history's summary)."""
    value = next(iter(results["summary"].values()))["last_rounds_validation_accuracy"]
    if value is None:
        raise StudyError("a tuning run without validation accuracy: its split has no validation set")
    return value


def tune(scenario, data_root, out_root, log=print):
    """Run every strategy's grid of `scenario` (resumably) and write TUNING_FILE: the grid and the choices."""
    if scenario.tuning is None:
        raise StudyError(f"scenario {scenario.name!r} declares no [tuning] table: nothing to tune")
    tuning = checked_tuning(scenario.tuning, scenario)
    scenario = dataclasses.replace(scenario, tuning=tuning)
    default_rate = RoundSettings(**scenario.run).learning_rate
    found = {"scenario": scenario.name, "seeds": tuning["seeds"], "rounds": tuning["rounds"], "strategies": {}}
    for spec in scenario.strategies:
        key = strategies.parse_spec(spec).strategy.key
        points = []
        for point in grid_points(key, tuning, default_rate):
            scores = []
            for seed in tuning["seeds"]:
                out = out_root / key / point_folder(point) / f"semilla_{seed}"
                log(f"tuning {key} at {point_folder(point)}, seed {seed}")
                results = run_point(scenario, spec, point, seed, data_root / f"semilla_{seed}", out, log)
                scores.append(score(results))
            points.append({"setting": point, "validation_scores": scores, "validation_score": float(np.mean(scores))})
        chosen = max(points, key=lambda p: p["validation_score"])  # max keeps the first of equal scores
        found["strategies"][key] = {"chosen": chosen["setting"], "grid": points}
    write_text_atomically(out_root / TUNING_FILE, json.dumps(found, indent=2) + "\n")
    return found


REPORT_DIR = "informe"  # beside ajuste.json: each strategy at its chosen setting on the reported seeds
BASELINES_DIR = "centralizado"  # in REPORT_DIR: the centralized baseline of each reported seed


def report(scenario, found, data_root, out_root, log=print):
    """Each strategy at its chosen setting on the scenario's own seeds and rounds (never the tuning seeds), with the
    centralized baseline at equal epochs (FedAvg's chosen η); summarised like a simulation's seeds (resumen.json:
    mean ± std, and every pair as a Holm-corrected family). Resumable run by run; returns the summary."""
    if not scenario.seeds:
        raise StudyError(f"scenario {scenario.name!r} declares no seeds to report on")
    settings = RoundSettings(**{**scenario.run, "seed": scenario.seeds[0]})
    runs, baselines = [], []
    for seed in scenario.seeds:
        data = data_root / f"semilla_{seed}"
        per_strategy = []
        for spec in scenario.strategies:
            key = strategies.parse_spec(spec).strategy.key
            point = found["strategies"][key]["chosen"]
            log(f"study: {key} at {point_folder(point)}, seed {seed}, {settings.rounds} rounds")
            out = out_root / REPORT_DIR / key / f"semilla_{seed}"
            per_strategy.append(run_point(scenario, spec, point, seed, data, out, log, settings.rounds, "study"))
        runs.append(merged_run(per_strategy))
        baselines.append(centralized_baseline(scenario, found, seed, data, out_root / REPORT_DIR / BASELINES_DIR))
    summary, _ = write_seed_summary(out_root, runs, f"{scenario.label} (ajustado)", baselines, verdicts=True)
    return summary


def merged_run(per_strategy):
    """One seed's single-strategy runs as one history: the strategies side by side, each with its own η (they share
    the seed, so the split, the initial weights and the clients sampled each round: a paired design)."""
    first = per_strategy[0]
    names = [run["config"]["strategies"][0] for run in per_strategy]
    config = {
        **first["config"],
        "strategies": names,
        "learning_rate": {name: run["config"]["learning_rate"] for name, run in zip(names, per_strategy)},
        "parameters": {k: v for run in per_strategy for k, v in run["config"]["parameters"].items()},
    }
    return {
        "config": config,
        "rounds_completed": min(run["rounds_completed"] for run in per_strategy),
        "history": {name: run["history"][name] for name, run in zip(names, per_strategy)},
        "summary": {name: run["summary"][name] for name, run in zip(names, per_strategy)},
    }


def centralized_baseline(scenario, found, seed, data, out_root):
    """The centralized baseline of one reported seed, R·C·E epochs at FedAvg's chosen η (read back if written)."""
    rate = found["strategies"].get("fedavg", {}).get("chosen", {}).get("learning_rate")
    base = RoundSettings(**{**scenario.run, "seed": seed})
    settings = dataclasses.replace(base, learning_rate=rate or base.learning_rate)
    manifest = ensure_split(data, scenario.split_spec(seed), replace=True)
    out = out_root / f"semilla_{seed}"
    baseline = read_baseline(out, settings, manifest["num_clients"])
    if baseline is None:
        baseline = train_centralized(Federation.load(data, manifest), settings)
        out.mkdir(parents=True, exist_ok=True)
        write_baseline(out, baseline)
    return baseline


def compute_spent(folder):
    """{part: (finished runs, hours)} of one scenario's study folder, summed from the seconds its finished runs
    recorded: the tuning's grid points, the report's runs and the report's centralized baselines. A run still in
    progress counts nothing (its rounds are in its checkpoint, not yet in a result)."""
    spent = {"tuning": [0, 0.0], "report": [0, 0.0], "baselines": [0, 0.0]}
    for path in folder.rglob(RESULTS_FILE):
        part = "report" if path.relative_to(folder).parts[0] == REPORT_DIR else "tuning"
        history = json.loads(path.read_text())["history"]
        spent[part][0] += 1
        spent[part][1] += sum(row["seconds"] for rows in history.values() for row in rows)
    for path in (folder / REPORT_DIR / BASELINES_DIR).glob(f"*/{BASELINE_FILE}"):
        spent["baselines"][0] += 1
        spent["baselines"][1] += json.loads(path.read_text())["seconds"]
    return {part: (runs, seconds / 3600) for part, (runs, seconds) in spent.items()}
