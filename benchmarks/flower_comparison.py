"""The same federation three ways: the project's simulation, Flower's simulation, Flower's deployment.

    python -m benchmarks.flower_comparison --clients 5 --rounds 5

K IID clients (split_data.py, --seed), FedAvg, E = 1, B = 64, R rounds, the same seeds for local
training. Each run is a fresh process, timed from start to exit (so Flower's start-up counts);
writes results/flower/<run>/simulacion.json and results/flower/comparacion.json, and prints the table.
"""

import argparse
import json
import subprocess
import sys
import time

from benchmarks.common import machine_description
from fedmnist import defaults
from fedmnist.data import SplitSpec, ensure_split
from fedmnist.files import write_text_atomically
from fedmnist.history import RESULTS_FILE

OUT_DIR = defaults.RESULTS_DIR / "flower"


def own_simulation(data, out, rounds, seed):
    options = ["--rounds", rounds, "--strategies", "fedavg", "--epochs", "1", "--seed", seed, "--force"]
    return ["experiments/simulation.py", "--data", data, "--out", out, *options]


def flower_local(mode):
    """The command of tools/flower_local.py in `mode`, as a function of the run's settings."""

    def command(data, out, rounds, seed):
        return ["tools/flower_local.py", mode, "--data", data, "--out", out, "--rounds", rounds, "--seed", seed]

    return command


# name -> the command after `python`, given the data folder, output folder, rounds and seed
RUNS = {
    "propia": own_simulation,
    "flower_simulacion": flower_local("simulation"),
    "flower_despliegue": flower_local("deployment"),
}


def timed_run(command):
    started = time.perf_counter()
    subprocess.run([sys.executable, *command], cwd=defaults.PROJECT_DIR, stdin=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", "-K", type=int, default=defaults.NUM_CLIENTS)
    parser.add_argument("--rounds", "-R", type=int, default=5)
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    args = parser.parse_args(argv)

    data = defaults.SCENARIO_DATA_DIR / f"iid_{args.clients}"
    ensure_split(data, SplitSpec(num_clients=args.clients, seed=args.seed), replace=True)
    runs = {}
    for name, command in RUNS.items():
        out = OUT_DIR / name
        print(f"\n==> {name}", flush=True)
        seconds = timed_run(command(str(data), str(out), str(args.rounds), str(args.seed)))
        history = json.loads((out / RESULTS_FILE).read_text())["history"]["fedavg"]
        runs[name] = {
            "final_accuracy": history[-1]["accuracy"],
            "accuracy_per_round": [row["accuracy"] for row in history],
            "wall_seconds": round(seconds, 1),
        }

    results = {
        "config": {
            "clients": args.clients,
            "rounds": args.rounds,
            "partition": "iid",
            "strategy": "fedavg",
            "epochs": 1,
            "batch_size": defaults.BATCH_SIZE,
            "seed": args.seed,
        },
        "runs": runs,
        "machine": machine_description(),
    }
    write_text_atomically(OUT_DIR / "comparacion.json", json.dumps(results, indent=2) + "\n")
    print(f"\n{'run':<20} {'final accuracy':>15} {'wall seconds':>13}")
    for name, row in runs.items():
        print(f"{name:<20} {100 * row['final_accuracy']:>14.2f}% {row['wall_seconds']:>13.1f}")
    print(f"Wrote {OUT_DIR / 'comparacion.json'}")


if __name__ == "__main__":
    main()
