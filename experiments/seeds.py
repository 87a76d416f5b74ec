"""The one-shot comparison and the robustness study over several seeds: mean ± standard deviation.

    python experiments/seeds.py --seeds 42 43 44

For each seed s it splits full MNIST for K clients with seed s (data/semillas/semilla_s: a new
split and new initial weights), runs the robustness study with seed s (local training and the
noise attack) into results/semillas/semilla_s/, and summarises every accuracy over the seeds in
results/semillas.json (percent; std is the sample standard deviation, n - 1) and
results/semillas.png.
"""

import argparse
import sys
import time
from pathlib import Path

from fedmnist import defaults, strategies
from fedmnist.data import SplitSpec, ensure_split
from fedmnist.files import check_writable
from fedmnist.partition import PartitionError
from fedmnist.robustness import StudySettings, run_study, summarize_seeds, write_study, write_summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(defaults.STUDY_SEEDS), help="the seeds (default: %(default)s)"
    )
    parser.add_argument(
        "--clients",
        "-K",
        type=int,
        default=defaults.NUM_CLIENTS,
        help="K, the number of clients (default: %(default)s)",
    )
    parser.add_argument(
        "--data", type=Path, default=defaults.DATA_DIR / "semillas", help="where each seed's split goes"
    )
    parser.add_argument("--out", type=Path, default=defaults.RESULTS_DIR, help="output folder (default: results/)")
    parser.add_argument(
        "--epochs", "-E", type=int, default=defaults.EPOCHS, help="E, local epochs (default: %(default)s)"
    )
    strategies.add_parameter_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if len(set(args.seeds)) < 2 or len(set(args.seeds)) != len(args.seeds):
        sys.exit(
            f"seeds.py: error: --seeds {' '.join(map(str, args.seeds))}: give at least two different seeds, each once"
        )
    try:
        values = strategies.parameters_from_options(args)
        check_writable(args.out)
    except (ValueError, OSError) as err:
        sys.exit(f"seeds.py: error: {err}")
    started = time.perf_counter()
    runs = []
    for seed in args.seeds:
        data, out = args.data / f"semilla_{seed}", args.out / "semillas" / f"semilla_{seed}"
        print(f"\n==> seed {seed}: split into {data}, robustness study into {out}")
        try:
            ensure_split(data, SplitSpec(num_clients=args.clients, seed=seed))
            run = run_study(data, StudySettings(epochs=args.epochs, seed=seed, values=values))
            out.mkdir(parents=True, exist_ok=True)
        except (PartitionError, OSError) as err:
            sys.exit(f"seeds.py: error: {err}")
        write_study(out, run)
        runs.append(run)

    summary = summarize_seeds(runs, args.seeds, time.perf_counter() - started)
    written = write_summary(args.out, summary)
    print(f"\n{'one shot, no attack':<22} mean ± std over seeds {args.seeds}")
    for key, row in summary["one_shot"].items():
        print(f"{key:<22} {row['mean']:6.2f} ± {row['std']:.2f}")
    print(f"Wrote {' and '.join(map(str, written))} in {summary['config']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
