"""Robustness study: every registered strategy against faulty and malicious clients, with numbers.

    python experiments/robustness.py --data data --out results

Each client trains once (plain and FedProx), plus the label-flipped variant of
the clients that may attack; those updates are then reused for every attack,
every number M of attackers and every strategy. Writes robustez.json and
robustez.png (with each honest local model's accuracy, for reference), and prints
the points each strategy loses.
"""

import argparse
import sys
from pathlib import Path

from fedmnist import defaults, strategies
from fedmnist.errors import FedMnistError
from fedmnist.files import check_writable
from fedmnist.studies.robustness import StudySettings, run_study, write_study


def print_table(results):
    names = {row.key: row.name for row in strategies.noiseless_one_shot_rows()}
    header = f"{'attack':<11} {'M':>2} " + " ".join(f"{name:>13}" for name in names.values())
    print("\n" + header + "\n" + "-" * len(header))
    for attack, rows in results["attacks"].items():
        for m, row in rows.items():
            print(
                f"{attack:<11} {m:>2} "
                + " ".join(f"{'n/a':>13}" if row.get(k) is None else f"{100 * row[k]:>12.2f}%" for k in names)
            )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=defaults.DATA_DIR, help="split_data.py's output folder (default: data/)"
    )
    parser.add_argument("--out", type=Path, default=defaults.RESULTS_DIR, help="output folder (default: results/)")
    parser.add_argument(
        "--malicious",
        type=int,
        nargs="+",
        default=list(defaults.MALICIOUS_COUNTS),
        help="the values of M to study (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", "-E", type=int, default=defaults.EPOCHS, help="E, local epochs (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size", "-B", type=int, default=defaults.BATCH_SIZE, help="B, local batch size (default: %(default)s)"
    )
    strategies.add_parameter_options(parser)
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.SEED,
        help="seed of local training and of the noise attack (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        settings = StudySettings(
            tuple(args.malicious), args.epochs, args.batch_size, args.seed, strategies.parameters_from_options(args)
        )
        print(f"robustness: data={args.data} out={args.out} {settings}")
        check_writable(args.out)
        results = run_study(args.data, settings)
    except (ValueError, FedMnistError, OSError) as err:
        sys.exit(f"robustness.py: error: {err}")
    written = write_study(args.out, results)
    print_table(results)
    print(f"\nWrote {' and '.join(map(str, written))} in {results['config']['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
