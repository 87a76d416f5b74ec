"""Multi-round federated learning on one machine, for a named scenario or options of your own.

    python experiments/simulation.py --scenario curso-iid
    python experiments/simulation.py --scenario fedavg-shards --seeds 42 43 44 --workers 2 --resume
    python experiments/simulation.py --data data --rounds 10 --strategies fedavg fedprox:0.01 fedmed

A scenario (experiments/scenarios/<name>.toml) names its partition, which is split
on demand, and its settings; options given here override them. Writes
simulacion.json and simulacion.png (fedmnist/history.py's format) to --out; each
round's global weights and server states are checkpointed, so --resume continues
an interrupted run to the same result.

With --seeds (or a scenario's own seeds), each seed s is a run of its own (a
scenario's partition split with s, and s for client sampling and training) in
--out/semilla_s/, with its centralized baseline (fedmnist/studies/centralized.py), and
the seeds are summarised together in --out (fedmnist/studies/seed_summary.py).
"""

import argparse
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from fedmnist import defaults, strategies
from fedmnist.data import PARTITION_FIGURE, ensure_split, read_manifest
from fedmnist.errors import FedMnistError
from fedmnist.files import project_relative
from fedmnist.history import (
    FIGURE_FILE,
    PARTIAL_FILE,
    RESULTS_FILE,
    check_fresh_start,
    load_state,
    new_history,
    save_state,
    write_results,
)
from fedmnist.settings import SETTINGS, add_options
from fedmnist.simulation import Federation, RoundSettings, history_config, run_rounds, strategy_problems
from fedmnist.studies import scenarios
from fedmnist.studies.centralized import read_baseline, train_centralized, write_baseline
from fedmnist.studies.seed_summary import print_seed_summary, write_seed_summary

SETTING_OPTIONS = tuple(name for name in SETTINGS if name != "seed")  # --seed and --seeds choose the seeds


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scenario",
        choices=scenarios.names(),
        help="a named scenario: splits its data if needed and sets the defaults below",
    )
    parser.add_argument(
        "--data", type=Path, help="split_data.py's output folder (default: data/, or data/escenarios/<scenario>)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: results/simulacion/<scenario or 'run'>)")
    add_options(parser, SETTING_OPTIONS[:7])  # R, C, sampling, E, B, the local optimizer and its η
    parser.add_argument(
        "--strategies",
        nargs="+",
        help=f"any of {', '.join(strategies.REGISTRY)}, each optionally with its first parameter "
        f"(fedprox:0.01) (default: {' '.join(defaults.ROUND_STRATEGIES)})",
    )
    strategies.add_parameter_options(parser)
    add_options(parser, ("attack", "malicious"))
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seed",
        type=int,
        help=f"seed of the scenario's split, client sampling and local training (default: {defaults.SEED}, "
        "or the scenario's seeds)",
    )
    seeds.add_argument(
        "--seeds", type=int, nargs="+", help="several seeds, each a run in --out/semilla_<s>/, then summarised together"
    )
    add_options(parser, ("trainer", "workers"))
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out, or extend finished results to more --rounds",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="start over in an --out that holds results (they stay until the new run finishes)",
    )
    return parser.parse_args(argv)


def settings_from(args, scenario, seed):
    """RoundSettings: the defaults, then the scenario's, then the options given."""
    chosen = {**(scenario.run if scenario else {}), "seed": seed}
    chosen.update({key: getattr(args, key) for key in SETTING_OPTIONS if getattr(args, key) is not None})
    return RoundSettings(**{f.name: chosen[f.name] for f in fields(RoundSettings) if f.name in chosen})


@dataclass(frozen=True)
class Run:
    """One seed's run: its settings, data and output folders."""

    settings: RoundSettings
    data: Path
    out: Path


def resolve(args):
    """(scenario, configured strategies, [Run]); ValueError if one cannot work (before any split is made)."""
    if args.resume and args.force:
        raise ValueError("--resume and --force: choose one")
    scenario = scenarios.load(args.scenario) if args.scenario else None
    if args.seed is None and not args.seeds and scenario and scenario.seeds:
        args.seeds = list(scenario.seeds)
    seeds = args.seeds or [defaults.SEED if args.seed is None else args.seed]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {' '.join(map(str, seeds))}: each seed once")
    values = strategies.parameters_from_options(args)
    specs = args.strategies or (scenario.strategies if scenario else defaults.ROUND_STRATEGIES)
    configured = [strategies.parse_spec(spec, values) for spec in specs]
    if len({c.name for c in configured}) != len(configured):
        raise ValueError(f"--strategies {' '.join(specs)}: each strategy may appear once")
    out = args.out or scenarios.results_dir(scenario.name if scenario else "run")
    data = args.data or (defaults.SCENARIO_DATA_DIR / scenario.name if scenario else defaults.DATA_DIR)
    runs = []
    for seed in seeds:
        settings = settings_from(args, scenario, seed)
        if problem := settings.problems() or strategy_problems(configured, settings):
            raise ValueError(problem)
        by_seed = args.seeds is not None
        seed_data = data / f"semilla_{seed}" if by_seed and scenario and not args.data else data
        runs.append(Run(settings, seed_data, out / f"semilla_{seed}" if by_seed else out))
    return scenario, configured, runs, out


def run_one(args, scenario, configured, run):
    """Split if needed, run (or resume) one seed, write its results; returns them."""
    settings, data, out = run.settings, run.data, run.out
    # the scenario's own folder (no --data) may be re-split; a folder of the user's never is, unasked
    own_folder = args.data is None
    if scenario:
        hint = "choose another --data, or leave --data out to use the scenario's own folder"
        manifest = ensure_split(data, scenario.split_spec(settings.seed), replace=own_folder, hint=hint)
    else:
        manifest = read_manifest(data)
    if settings.malicious >= manifest["num_clients"]:
        raise ValueError(f"--malicious {settings.malicious}: must be below K = {manifest['num_clients']}")
    config = history_config(
        settings,
        manifest,
        configured,
        runtime="simulation",
        scenario=scenario.name if scenario else None,
        data=project_relative(data),
    )
    print("simulation: " + ", ".join(f"{k}={v}" for k, v in config.items()) + f", rounds={settings.rounds}")
    federation = Federation.load(data, manifest)
    started = (out / RESULTS_FILE).is_file() or (out / PARTIAL_FILE).is_file()
    if args.resume and (started or not args.seeds):
        results, states = load_state(out, config, settings.rounds)
    elif args.resume:
        results, states = new_history(config), None  # a seed that had not started
    else:
        check_fresh_start(out, args.force)
        results, states = new_history(config), None
    out.mkdir(parents=True, exist_ok=True)
    results, _ = run_rounds(
        federation,
        configured,
        settings,
        results,
        states,
        on_round=lambda state, weights: save_state(out, state, weights),
    )
    title = (
        f"{scenario.label if scenario else 'Simulación'}: K = {manifest['num_clients']}, C = {settings.fraction}, "
        f"E = {settings.epochs}, B = {settings.batch_size}, semilla {settings.seed}"
    )
    figure = data / PARTITION_FIGURE
    write_results(out, results, title, [(PARTITION_FIGURE, figure.read_bytes())] if figure.is_file() else [])
    print_summary(results["summary"])
    print(f"Wrote {out / RESULTS_FILE} and {out / FIGURE_FILE}")
    baseline = None
    if args.seeds and (scenario is None or scenario.centralized):
        baseline = read_baseline(out, settings, manifest["num_clients"])
        if baseline is None:
            baseline = train_centralized(federation, settings)
            write_baseline(out, baseline)
        final = baseline["epochs"][-1]
        print(f"centralized baseline: {100 * final['accuracy']:.2f}% after {final['epoch']} epochs")
    return results, baseline


def main(argv=None):
    args = parse_args(argv)
    try:
        scenario, configured, runs, out = resolve(args)
        finished = [run_one(args, scenario, configured, run) for run in runs]
        if args.seeds:
            results, baselines = zip(*finished)
            summary, written = write_seed_summary(out, results, scenario.label if scenario else out.name, baselines)
            print_seed_summary(summary)
            print(f"Wrote {' and '.join(map(str, written))}")
    except (ValueError, FedMnistError, OSError) as err:
        sys.exit(f"simulation.py: error: {err}")


def print_summary(summary):
    print(f"\n{'strategy':<16} {'final acc':>9} {'rounds to 97%':>14} {'rounds to 99%':>14} {'seconds':>8}")
    for name, row in summary.items():
        print(
            f"{name:<16} {100 * row['final_accuracy']:>8.2f}% {str(row['rounds_to_97'] or '-'):>14} "
            f"{str(row['rounds_to_99'] or '-'):>14} {row['seconds']:>8.0f}"
        )


if __name__ == "__main__":
    main()
