"""The batched trainer against the per-client one on the paper's IID FedAvg run, paired by seed.

    make trainers     # the six runs (20 rounds, seeds 42-44, each trainer), then this

Reads results/motor/<trainer>/semilla_<s>/simulacion.json and writes
results/motor/comparacion.json: each trainer's final accuracy, mean of the last
rounds and rounds to 97 % and 99 % per seed, and the paired verdict (batched −
per-client) of fedmnist/studies/significance.py against its declared margin.
"""

import argparse
import json
import sys

from fedmnist.defaults import RESULTS_DIR
from fedmnist.files import write_text_atomically
from fedmnist.history import RESULTS_FILE
from fedmnist.studies.significance import MARGIN_POINTS, compare_family

TRAINERS = ("per-client", "batched")
SEEDS = (42, 43, 44)
STRATEGY = "fedavg"


def read_runs(root):
    """{trainer: [summary of each seed]}; OSError or ValueError naming a run that is missing or damaged."""
    runs = {}
    for trainer in TRAINERS:
        runs[trainer] = []
        for seed in SEEDS:
            path = root / trainer / f"semilla_{seed}" / RESULTS_FILE
            try:
                runs[trainer].append(json.loads(path.read_text())["summary"][STRATEGY])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}: not a finished run ({type(err).__name__}); run make trainers") from None
    return runs


def main(argv=None):
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    root = RESULTS_DIR / "motor"
    try:
        runs = read_runs(root)
    except (OSError, ValueError) as err:
        sys.exit(f"trainers.py: error: {err}")
    finals = {trainer: [100 * run["final_accuracy"] for run in runs[trainer]] for trainer in TRAINERS}
    found = {
        "seeds": list(SEEDS),
        "trainers": {
            trainer: {
                "final_accuracy": [run["final_accuracy"] for run in runs[trainer]],
                "rounds_to_97": [run["rounds_to_97"] for run in runs[trainer]],
                "rounds_to_99": [run["rounds_to_99"] for run in runs[trainer]],
            }
            for trainer in TRAINERS
        },
        "batched_minus_per_client": compare_family({"final_accuracy": (finals["batched"], finals["per-client"])})[
            "final_accuracy"
        ],
        "margin_points": MARGIN_POINTS,
    }
    write_text_atomically(root / "comparacion.json", json.dumps(found, indent=2) + "\n")
    verdict = found["batched_minus_per_client"]
    low, high = verdict["ci95"]
    print(f"final accuracy, batched − per-client over seeds {list(SEEDS)}: {verdict['mean']:+.2f} points")
    equivalence = verdict["equivalence_p_value"]
    print(f"  95 % interval [{low:+.2f}, {high:+.2f}], TOST p = {equivalence:.4f} against ±{MARGIN_POINTS}")
    print(f"  verdict: {verdict['verdict']}")
    print(f"Wrote {root / 'comparacion.json'}")


if __name__ == "__main__":
    main()
