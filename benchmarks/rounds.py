"""Rounds per hour at McMahan et al.'s IID setting: local training in this process against a worker pool, side by side.

    python -m benchmarks.rounds
    python -m benchmarks.rounds --rounds 3 --workers 0 2

K = 100 IID clients (the fedavg-iid scenario's split), C = 0.1, E = 5, B = 10,
FedAvg. Each arm plays the same rounds from the same initial weights; the first
round (which starts the pool's processes and traces the training step in each) is
reported apart, and rounds per hour come from the median of the later rounds.
The arms run one after the other in one run: keep the machine otherwise idle.
Writes results/benchmarks.json under "rounds".
"""

import argparse
import statistics

from benchmarks.common import update_results
from fedmnist import scenarios, strategies
from fedmnist.data import ensure_split
from fedmnist.defaults import SCENARIO_DATA_DIR, SEED
from fedmnist.simulation import Federation, RoundSettings, run_rounds

SCENARIO = "fedavg-iid"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per arm, the first one excluded (default: 3)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[0, 2], help="the arms: 0 is this process (default: 0 2)"
    )
    return parser.parse_args(argv)


def round_seconds(federation, settings):
    """[seconds of each round] of one arm: its rounds in one go, as a real run plays them."""
    results, _ = run_rounds(federation, [strategies.parse_spec("fedavg")], settings, log=lambda line: None)
    return [row["seconds"] for row in results["history"]["fedavg"]]


def main(argv=None):
    args = parse_args(argv)
    scenario = scenarios.load(SCENARIO)
    data = SCENARIO_DATA_DIR / SCENARIO
    manifest = ensure_split(data, scenario.split_spec(SEED))
    federation = Federation.load(data, manifest)
    run = {k: v for k, v in scenario.run.items() if k in ("fraction", "epochs", "batch_size")}
    arms = {}
    for workers in args.workers:
        settings = RoundSettings(rounds=args.rounds + 1, seed=SEED, workers=workers, **run)
        seconds = round_seconds(federation, settings)
        later = seconds[1:]
        arms[str(workers)] = {
            "workers": workers,
            "first_round_seconds": seconds[0],
            "round_seconds": later,
            "rounds_per_hour": round(3600 / statistics.median(later), 1),
        }
        print(
            f"workers {workers}: first round {seconds[0]:.1f} s, later rounds "
            f"{', '.join(f'{s:.1f}' for s in later)} s -> {arms[str(workers)]['rounds_per_hour']:.0f} rounds/hour"
        )
    base = arms[str(args.workers[0])]["rounds_per_hour"]
    for arm in arms.values():
        arm["speedup"] = round(arm["rounds_per_hour"] / base, 2)
    update_results(
        "rounds",
        {
            "setting": f"{SCENARIO}: K = {manifest['num_clients']}, {run}, FedAvg, seed {SEED}",
            "arms": arms,
        },
    )
    print(", ".join(f"workers {a['workers']}: {a['speedup']:.2f}x" for a in arms.values()))


if __name__ == "__main__":
    main()
