"""The privacy study: what updates and models leak in the privacidad-* runs, and accuracy against ε over seeds.

Run the scenarios first (make privacy does both):

    python experiments/simulation.py --scenario privacidad-iid --resume
    python experiments/privacy.py

For every finished seed it writes fuga.json beside simulacion.json (kept on later
runs unless --force), then results/privacidad/privacidad.json and .png. See
fedmnist/studies/privacy_study.py for what is measured and how.
"""

import argparse
import json
import sys

from fedmnist.errors import FedMnistError
from fedmnist.history import RESULTS_FILE
from fedmnist.studies import StudyError, scenarios
from fedmnist.studies.privacy_study import LEAKAGE_FILE, leakage_of_run, summarize, write_summary


def iid_first(name):
    """Sort key: the IID control first, then the heterogeneous splits, as the tables read."""
    return scenarios.load(name).split_spec(0).partition != "iid"


PRIVACY_SCENARIOS = sorted(scenarios.of_study("privacy"), key=iid_first)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scenarios", nargs="+", choices=PRIVACY_SCENARIOS, default=PRIVACY_SCENARIOS, help="(default: all of them)"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for local training (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="measure again the seeds that have a fuga.json")
    return parser.parse_args(argv)


def scenario_results(name, workers, force):
    """(label, [simulacion.json per seed], [fuga.json per seed]) of one scenario, measuring what is missing."""
    scenario = scenarios.load(name)
    runs, found = [], []
    for seed in scenario.seeds:
        run_dir = scenarios.results_dir(name) / f"semilla_{seed}"
        if not (run_dir / RESULTS_FILE).is_file():
            raise StudyError(f"{run_dir / RESULTS_FILE}: missing; run experiments/simulation.py --scenario {name}")
        runs.append(json.loads((run_dir / RESULTS_FILE).read_text()))
        leak = run_dir / LEAKAGE_FILE
        found.append(json.loads(leak.read_text()) if leak.is_file() and not force else leakage_of_run(run_dir, workers))
    return scenario.label, runs, found


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: must be at least 1")
        summary = summarize({name: scenario_results(name, args.workers, args.force) for name in args.scenarios})
        written = write_summary(summary)
    except (ValueError, FedMnistError, OSError) as err:
        sys.exit(f"privacy.py: error: {err}")
    for name, scenario in summary["scenarios"].items():
        print(f"\n{scenario['label']} ({name}): final accuracy over {len(scenario['seeds'])} seeds")
        for key, row in scenario["strategies"].items():
            epsilon = row.get("epsilon")
            print(
                f"  {key:<24} {row['final_accuracy']['mean']:6.2f} ± {row['final_accuracy']['std'] or 0:.2f}"
                + (
                    ""
                    if "noise_multiplier" not in row
                    else f"   ε = {epsilon if epsilon is None else f'{epsilon:.3g}'}"
                )
            )
        print(f"  cohort for ε = 1 within a point of FedAvg: {scenario['cohort']}")
    print(f"Wrote {' and '.join(map(str, written))}")


if __name__ == "__main__":
    main()
