"""Multi-round federated learning on one machine, for a named scenario or options of your own.

    python experiments/simulation.py --scenario curso-iid
    python experiments/simulation.py --data data --rounds 10 --strategies fedavg fedprox:0.01 fedmed

A scenario (experiments/scenarios/<name>.toml) names its partition, which is split
on demand, and its settings; options given here override them. Writes
simulacion.json and simulacion.png (fedmnist/history.py's format) to --out; each
round's global weights are checkpointed, so --resume continues an interrupted run
to the same result.
"""

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from fedmnist import defaults, scenarios, strategies
from fedmnist.attacks import ATTACKS
from fedmnist.comparison import project_relative
from fedmnist.data import PARTITION_FIGURE, ensure_split, read_manifest
from fedmnist.history import (
    FIGURE_FILE,
    RESULTS_FILE,
    check_fresh_start,
    load_state,
    new_history,
    run_config,
    save_state,
    write_results,
)
from fedmnist.partition import PartitionError
from fedmnist.simulation import Federation, RoundSettings, run_rounds

SETTING_OPTIONS = ("rounds", "fraction", "epochs", "batch_size", "learning_rate", "attack", "malicious")


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
    parser.add_argument("--rounds", "-R", type=int, help=f"R, communication rounds (default: {defaults.ROUNDS})")
    parser.add_argument(
        "--fraction", "-C", type=float, help=f"C, fraction of clients sampled per round (default: {defaults.FRACTION})"
    )
    parser.add_argument(
        "--epochs", "-E", type=int, help=f"E, local epochs per round (default: {defaults.ROUND_EPOCHS})"
    )
    parser.add_argument("--batch-size", "-B", type=int, help=f"B, local batch size (default: {defaults.BATCH_SIZE})")
    parser.add_argument(
        "--learning-rate", "--lr", type=float, help=f"local Adam learning rate (default: {defaults.LEARNING_RATE})"
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        help=f"any of {', '.join(strategies.REGISTRY)}, each optionally with its first parameter "
        f"(fedprox:0.01) (default: {' '.join(defaults.ROUND_STRATEGIES)})",
    )
    strategies.add_parameter_options(parser)
    parser.add_argument("--attack", choices=ATTACKS, help="simulate M malicious clients with this attack")
    parser.add_argument("--malicious", "-M", type=int, help="M, malicious clients: the lowest ids (default: 0)")
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.SEED,
        help="seed of the scenario's split, client sampling and local training (default: %(default)s)",
    )
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


def settings_from(args, scenario):
    """RoundSettings: the defaults, then the scenario's, then the options given."""
    chosen = {**(scenario.run if scenario else {}), "seed": args.seed}
    chosen.update({key: getattr(args, key) for key in SETTING_OPTIONS if getattr(args, key) is not None})
    return RoundSettings(**{f.name: chosen[f.name] for f in fields(RoundSettings) if f.name in chosen})


def resolve(args):
    """(scenario, settings, configured strategies, data folder, out folder, manifest); ValueError if one cannot work."""
    if args.resume and args.force:
        raise ValueError("--resume and --force: choose one")
    scenario = scenarios.load(args.scenario) if args.scenario else None
    settings = settings_from(args, scenario)
    if problem := settings.problems():
        raise ValueError(problem)
    values = strategies.parameters_from_options(args)
    specs = args.strategies or (scenario.strategies if scenario else defaults.ROUND_STRATEGIES)
    configured = [strategies.parse_spec(spec, values) for spec in specs]
    if len({c.name for c in configured}) != len(configured):
        raise ValueError(f"--strategies {' '.join(specs)}: each strategy may appear once")
    data = args.data or (defaults.SCENARIO_DATA_DIR / scenario.name if scenario else defaults.DATA_DIR)
    out = args.out or defaults.RESULTS_DIR / "simulacion" / (scenario.name if scenario else "run")
    manifest = ensure_split(data, scenario.split_spec(args.seed)) if scenario else read_manifest(data)
    if settings.malicious >= manifest["num_clients"]:
        raise ValueError(f"--malicious {settings.malicious}: must be below K = {manifest['num_clients']}")
    return scenario, settings, configured, data, out, manifest


def main(argv=None):
    args = parse_args(argv)
    try:
        scenario, settings, configured, data, out, manifest = resolve(args)
    except (ValueError, PartitionError) as err:
        sys.exit(f"simulation.py: error: {err}")
    config = run_config(
        runtime="simulation",
        scenario=scenario.name if scenario else None,
        data=project_relative(data),
        manifest=manifest,
        fraction=settings.fraction,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        strategies=[c.name for c in configured],
        seed=settings.seed,
        attack=settings.attack,
        malicious=settings.malicious,
        parameters={c.name: c.values for c in configured if c.values},
    )
    print("simulation: " + ", ".join(f"{k}={v}" for k, v in config.items()) + f", rounds={settings.rounds}")
    try:
        federation = Federation.load(data, manifest)
        if args.resume:
            results, global_weights = load_state(out, config)
        else:
            check_fresh_start(out, args.force)
            results, global_weights = new_history(config), None
        out.mkdir(parents=True, exist_ok=True)
    except (PartitionError, OSError) as err:
        sys.exit(f"simulation.py: error: {err}")

    results, _ = run_rounds(
        federation,
        configured,
        settings,
        results,
        global_weights,
        on_round=lambda state, weights: save_state(out, state, weights),
    )
    title = (
        f"{scenario.name if scenario else 'Simulación'}: K = {manifest['num_clients']}, C = {settings.fraction}, "
        f"E = {settings.epochs}, B = {settings.batch_size}, partición {manifest['partition']}"
    )
    figure = data / PARTITION_FIGURE
    write_results(out, results, title, [(PARTITION_FIGURE, figure.read_bytes())] if figure.is_file() else [])
    print_summary(results["summary"])
    print(f"Wrote {out / RESULTS_FILE} and {out / FIGURE_FILE}")


def print_summary(summary):
    print(f"\n{'strategy':<16} {'final acc':>9} {'rounds to 97%':>14} {'rounds to 99%':>14} {'seconds':>8}")
    for name, row in summary.items():
        print(
            f"{name:<16} {100 * row['final_accuracy']:>8.2f}% {str(row['rounds_to_97'] or '-'):>14} "
            f"{str(row['rounds_to_99'] or '-'):>14} {row['seconds']:>8.0f}"
        )


if __name__ == "__main__":
    main()
