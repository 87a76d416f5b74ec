"""The whole course workflow in one command (what `make demo` runs):

    python demo.py --clients 5 --seed 42
    python demo.py --rounds 3 --partition dirichlet --alpha 0.1 --out outputs/rondas

1. the organizer's split (split_data.py's): verified MNIST among K clients;
2. local_training.ipynb for CLIENT_ID 1..K through papermill (executed notebooks kept in --out);
3. the instructor's comparison (global_aggregation.py's) of every one-round rule;
and with --rounds R, steps 2 and 3 again from each round's published FedAvg model (round r in --out/ronda_r).
Everything lands in --out (outputs/, git-ignored); prints each stage's wall time. `make results` passes
--results results to refresh the committed figure and table.
"""

import argparse
import sys
from pathlib import Path

from fedmnist import defaults
from fedmnist.comparison import format_table
from fedmnist.data import MAX_CLIENTS, SplitSpec
from fedmnist.partition import add_partition_options, given_options
from fedmnist.training import check_training_parameters
from fedmnist.workflow import WorkflowError, run_demo


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--clients",
        "-K",
        type=int,
        default=defaults.NUM_CLIENTS,
        help="K, the number of clients (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.SEED,
        help="seed of the split, the initial weights and local training (default: %(default)s)",
    )
    parser.add_argument("--data", type=Path, default=defaults.DATA_DIR, help="partition folder (default: data/)")
    parser.add_argument(
        "--out",
        type=Path,
        default=defaults.OUTPUT_DIR,
        help="executed notebooks and every artifact (default: outputs/)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="also copy the figure and table here (make results uses results/; default: no copy)",
    )
    parser.add_argument("--epochs", "-E", type=int, default=None, help="E, local epochs (default: the notebook's)")
    parser.add_argument(
        "--batch-size", "-B", type=int, default=None, help="B, local batch size (default: the notebook's)"
    )
    parser.add_argument("--mu", type=float, default=None, help="mu of FedProx (default: the notebook's)")
    parser.add_argument(
        "--rounds", "-R", type=int, default=1, help="R, rounds of the hand-run federation (default: %(default)s)"
    )
    add_partition_options(parser)
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace a different split, or rounds published by hand, already in --data (default: refuse)",
    )
    return parser.parse_args(argv)


def split_spec(args):
    """The demo's split; ValueError naming the first option that cannot work."""
    if not 1 <= args.rounds <= defaults.MAX_ROUNDS:
        raise ValueError(f"--rounds {args.rounds}: must be in 1..{defaults.MAX_ROUNDS:,}")
    if not 1 <= args.clients <= MAX_CLIENTS:
        raise ValueError(f"--clients {args.clients}: must be in 1..{MAX_CLIENTS:,}")
    spec = SplitSpec.of(num_clients=args.clients, seed=args.seed, partition=args.partition, **given_options(args))
    spec.partition_options()  # PartitionError for an option the partition does not take, or out of its bounds
    return spec


def main(argv=None):
    args = parse_args(argv)
    overrides = {
        name: value
        for name, value in (("EPOCHS", args.epochs), ("BATCH_SIZE", args.batch_size), ("MU", args.mu))
        if value is not None
    }
    try:  # before the split: a setting that cannot train is refused first, not after minutes of work
        check_training_parameters(
            defaults.EPOCHS if args.epochs is None else args.epochs,
            defaults.BATCH_SIZE if args.batch_size is None else args.batch_size,
            defaults.MU if args.mu is None else args.mu,
        )
        spec = split_spec(args)
    except ValueError as err:
        sys.exit(f"demo.py: error: {err}")
    print(
        f"demo: {spec.describe()} rounds={args.rounds} data={args.data} out={args.out} "
        f"notebook overrides={overrides or 'none'}"
    )
    try:
        timings, results = run_demo(spec, args.data, args.out, overrides, args.results, args.replace, args.rounds)
    except WorkflowError as err:
        sys.exit(f"demo.py: error: {err}")
    print("\n" + format_table(results))
    print("\nWall time per stage: " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items()))
    print(f"Every artifact is in {args.out}" + (f"; figure and table copied to {args.results}" if args.results else ""))


if __name__ == "__main__":
    main()
