"""The whole course workflow in one command (what `make demo` runs):

    python demo.py --clients 5 --seed 42

1. split_data.py splits verified MNIST among K clients;
2. local_training.ipynb runs for CLIENT_ID 1..K through papermill (executed notebooks kept in --out);
3. global_aggregation.py aggregates and compares the methods.
Prints each stage's wall time and copies the comparison figure and table to results/.
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent


def run_demo(clients, seed, data_dir, out_dir, notebook_overrides, results_dir=None):
    """Run the three stages; return {stage: seconds}. Exits with one line if a stage fails."""
    import papermill

    import global_aggregation
    import split_data

    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    timings = {}
    started = time.perf_counter()
    print(f"==> [1/3] split_data.py: MNIST for {clients} clients (seed {seed})", flush=True)
    split_data.main(["--clients", str(clients), "--seed", str(seed), "--out", str(data_dir)])
    timings["split_data"] = time.perf_counter() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    for client_id in range(1, clients + 1):
        executed = out_dir / f"local_training_cliente_{client_id}.ipynb"
        print(f"==> [2/3] local_training.ipynb for CLIENT_ID {client_id} of {clients} -> {executed}", flush=True)
        stage = time.perf_counter()
        parameters = {"CLIENT_ID": client_id, "SEED": seed, "DATA_DIR": str(data_dir), "OUT_DIR": str(out_dir), **notebook_overrides}
        try:
            papermill.execute_notebook(PROJECT_DIR / "local_training.ipynb", executed, parameters=parameters, cwd=str(PROJECT_DIR))
        except papermill.PapermillExecutionError as err:
            sys.exit(f"demo.py: error: local_training.ipynb failed for CLIENT_ID {client_id}: {err.ename}: {err.evalue} (see {executed})")
        timings[f"client_{client_id}"] = time.perf_counter() - stage
        print(f"    client {client_id} done in {timings[f'client_{client_id}']:.0f} s", flush=True)

    print("==> [3/3] global_aggregation.py", flush=True)
    stage = time.perf_counter()
    global_aggregation.main(["--weights-dir", str(out_dir), "--data", str(data_dir), "--out", str(out_dir)])
    timings["global_aggregation"] = time.perf_counter() - stage
    timings["total"] = time.perf_counter() - started
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        for name in (global_aggregation.FIGURE_FILE, global_aggregation.RESULTS_FILE):
            shutil.copy(out_dir / name, results_dir / name)
    return timings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", "-K", type=int, default=5, help="K, the number of clients (default: 5)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split, the initial weights and local training (default: 42)")
    parser.add_argument("--data", type=Path, default=PROJECT_DIR / "data", help="partition folder (default: data/)")
    parser.add_argument("--out", type=Path, default=PROJECT_DIR / "outputs", help="executed notebooks and every artifact (default: outputs/)")
    parser.add_argument("--results", type=Path, default=PROJECT_DIR / "results", help="where the figure and table are copied (default: results/)")
    parser.add_argument("--epochs", "-E", type=int, default=None, help="E, local epochs (default: the notebook's)")
    parser.add_argument("--batch-size", "-B", type=int, default=None, help="B, local batch size (default: the notebook's)")
    parser.add_argument("--mu", type=float, default=None, help="mu of FedProx (default: the notebook's)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    overrides = {name: value for name, value in (("EPOCHS", args.epochs), ("BATCH_SIZE", args.batch_size), ("MU", args.mu)) if value is not None}
    print(f"demo: K={args.clients} seed={args.seed} data={args.data} out={args.out} notebook overrides={overrides or 'none'}")
    timings = run_demo(args.clients, args.seed, args.data, args.out, overrides, args.results)
    print("\nWall time per stage: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items()))
    print(f"Figure and table copied to {args.results}")


if __name__ == "__main__":
    main()
