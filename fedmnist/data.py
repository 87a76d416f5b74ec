"""The data folder that split_data.py writes and everyone else reads, and the weights archive format.

    cliente_N.npz          one partition per client, N = 1..K
    validacion.npz         held out of the training pool: every choice is made on it
    test.npz               the common test set, identical for every party: it only reports
    pesos_iniciales.npz    the round-0 global weights every client must start from
    manifest.json          seed, K, per-client counts and class histograms, SHA-256 of every file
    particion.png          the classes each client holds

Every file is checked against the manifest's SHA-256 when it is read. The weights
archive (pesos_iniciales.npz, the simulation's checkpoints) is an .npz with one
array per layer, w00, w01, ..., in `model.get_weights()` order.
"""

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedmnist import partition, seeds
from fedmnist.defaults import MAX_CLIENTS, NUM_CLIENTS, PARTITION, SEED, VALIDATION_FRACTION
from fedmnist.evaluation import plot_partition, save_figure
from fedmnist.files import InterruptedSetError, OutputSet, complete_interrupted_set
from fedmnist.mnist import as_images, load_mnist_uint8, sha256_bytes, sha256_file
from fedmnist.partition import NUM_CLASSES, PartitionError, hold_out, make_partition, stratified_subset
from fedmnist.restricted_pickle import printable
from fedmnist.training import seeded_model
from fedmnist.updates import SHA256_HEX, weights_sha256
from model import weight_shapes

MANIFEST = "manifest.json"
TEST_FILE = "test.npz"
VALIDATION_FILE = "validacion.npz"
INITIAL_WEIGHTS_FILE = "pesos_iniciales.npz"
ROUNDS_FILE = "rondas.json"  # the record of the rounds published by hand (fedmnist/rounds.py)
ROUND_WEIGHTS_GLOB = "pesos_ronda_*.npz"  # the starting weights of rounds 2, 3, ...
PARTITION_FIGURE = "particion.png"
FULL_TRAIN_SAMPLES = 60_000
# Bounds on what the organizer's folder may declare, checked before anything is built or allocated: the folder
# arrived from elsewhere (a shared drive, a course page), and a tampered one must cost one line, not the machine.
MANIFEST_LIMIT = 16_000_000  # bytes: 10,000 clients' entries take about 2.5 MB
ARRAY_LIMIT = 70_000 * 28 * 28  # bytes of one array: all of MNIST's images
IMAGE_SHAPE = (28, 28)


def client_file(client_id):
    return f"cliente_{client_id}.npz"


@dataclass(frozen=True)
class SplitSpec:
    """What a split is made of; the same spec and the same MNIST give the same files."""

    num_clients: int = NUM_CLIENTS
    seed: int = SEED
    partition: str = PARTITION
    options: tuple = ()  # the partitioner's options given, as sorted (name, value) pairs; the rest take defaults
    train_samples: int | None = None  # a stratified subset, for quick runs; None: all 60,000
    test_samples: int | None = None
    validation_fraction: float = VALIDATION_FRACTION  # of the training pool, held out before the partition

    @classmethod
    def of(cls, **settings):
        """A spec from keywords, a partitioner's options (alpha=0.1) among them; None leaves an option out."""
        names = set(partition.option_names())
        options = tuple(sorted((k, v) for k, v in settings.items() if k in names and v is not None))
        return cls(**{k: v for k, v in settings.items() if k not in names}, options=options)

    def partition_options(self):
        """Every option of the spec's partitioner, given or default; PartitionError for one it does not take."""
        return partition.get(self.partition).values(dict(self.options))

    def manifest_fields(self, train_samples, test_samples):
        """The fields of the manifest that record this spec."""
        return {
            "seed": self.seed,
            "seeding": seeds.SCHEME,
            "partition": self.partition,
            "train_samples": train_samples,
            "test_samples": test_samples,
            "validation_fraction": self.validation_fraction,
            **self.partition_options(),
        }

    def matches(self, manifest):
        """True if `manifest` was written for this spec (on full MNIST unless a subset was asked for)."""
        wanted = self.manifest_fields(self.train_samples or FULL_TRAIN_SAMPLES, self.test_samples)
        wanted = {key: value for key, value in wanted.items() if value is not None}
        return manifest.get("num_clients") == self.num_clients and all(
            manifest.get(key) == value for key, value in wanted.items()
        )

    def describe(self):
        options = "".join(f" {name.replace('_', '-')}={value}" for name, value in self.partition_options().items())
        return f"K={self.num_clients} clients, seed={self.seed}, partition={self.partition}{options}"


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def weights_archive_bytes(weights):
    """The weights archive: one array per layer, named w00, w01, ... in order."""
    return npz_bytes(**{f"w{i:02d}": w for i, w in enumerate(weights)})


def weights_from_archive(arrays):
    """The weights list back from an archive's {name: array}."""
    return [arrays[key] for key in sorted(arrays)]


def read_weights_archive(path):
    """Load a weights archive that this project wrote (a checkpoint); OSError or ValueError if unreadable."""
    with np.load(path, allow_pickle=False) as npz:
        return weights_from_archive({key: npz[key] for key in npz.files})


def slots_archive_bytes(slots):
    """Several named weight lists in one archive ({slot: [arrays]}, a server state): arrays named slot.000, ..."""
    return npz_bytes(**{f"{slot}.{i:03d}": w for slot, weights in slots.items() for i, w in enumerate(weights)})


def read_slots_archive(path):
    """{slot: [arrays]} back from `slots_archive_bytes`'s archive; OSError or ValueError if unreadable."""
    slots = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in sorted(npz.files):
            slot, _, _ = key.rpartition(".")
            slots.setdefault(slot, []).append(npz[key])
    return slots


def class_histogram(labels):
    return np.bincount(labels, minlength=NUM_CLASSES).tolist()


def split(out_dir, spec, mnist_path=None, log=print, replace=False):
    """Split verified MNIST by `spec` into `out_dir`, with the shared initial weights; returns the manifest.

    PartitionError (or MnistError) for a spec or source that cannot work, or for
    a folder holding another split unless `replace`; OSError if the folder cannot
    be written; either way the previous split is unchanged.
    """
    for name, value in (
        ("clients", spec.num_clients),
        ("train-samples", spec.train_samples),
        ("test-samples", spec.test_samples),
    ):
        if value is not None and value < 1:
            raise PartitionError(f"--{name}={value}: must be at least 1")
    if not 0 <= spec.seed < 2**32:
        raise PartitionError(f"--seed {spec.seed}: must be in 0..2^32-1")
    if not 0 <= spec.validation_fraction < 1:
        raise PartitionError(f"--validation-fraction {spec.validation_fraction}: must be in [0, 1)")
    if not replace:
        check_not_another_split(out_dir, spec)
    x_train, y_train, x_test, y_test = load_mnist_uint8(mnist_path, log=log)
    train_idx = stratified_subset(y_train, spec.train_samples, spec.seed)
    test_idx = stratified_subset(y_test, spec.test_samples, spec.seed, part=1)
    pool, held_out = hold_out(y_train[train_idx], spec.validation_fraction, spec.seed)
    pool_idx, validation_idx = train_idx[pool], train_idx[held_out]
    parts = make_partition(y_train[pool_idx], spec.num_clients, spec.seed, spec.partition, **spec.partition_options())
    initial_weights = seeded_model(spec.seed).get_weights()
    return write_partitions(
        out_dir,
        x_train[pool_idx],
        y_train[pool_idx],
        x_test[test_idx],
        y_test[test_idx],
        parts,
        initial_weights,
        spec.manifest_fields(len(train_idx), len(test_idx)),
        validation=(x_train[validation_idx], y_train[validation_idx]),
    )


REPLACE_HINT = "choose another folder, or replace it with --replace (updates trained on the old split stop matching)"


def ensure_split(data_dir, spec, log=print, replace=False, hint=REPLACE_HINT):
    """The manifest of `data_dir`, splitting into it first unless it already holds a split for `spec`.

    A folder holding another split is replaced only if `replace` (a folder the
    project owns, such as a scenario's under data/escenarios/); else PartitionError.
    """
    try:
        manifest = read_manifest(data_dir)
    except PartitionError:
        manifest = {}
    if manifest and spec.matches(manifest):
        return manifest
    if not replace:
        check_not_another_split(data_dir, spec, hint)
    log(f"Splitting MNIST into {data_dir}: {spec.describe()}")
    return split(data_dir, spec, log=log, replace=True)


def check_not_another_split(out_dir, spec, hint=REPLACE_HINT):
    """PartitionError naming both splits if `out_dir` holds a split other than `spec`'s: every update trained on it
    would stop matching. A folder without a readable manifest holds no split to lose."""
    try:
        manifest = read_manifest(out_dir)
    except PartitionError:
        return
    if not spec.matches(manifest):
        raise PartitionError(
            f"{out_dir} holds another split ({describe_manifest(manifest)}), not {spec.describe()}; {hint}"
        )


def describe_manifest(manifest):
    """A manifest's split in SplitSpec.describe()'s words (values shortened: the manifest is the organizer's)."""
    row = partition.REGISTRY.get(manifest.get("partition"))
    options = [option.name for option in row.options] if row else []
    words = [f"K={manifest['num_clients']} clients"] + [
        f"{key}={str(manifest.get(key))[:20]}" for key in ("seed", "partition", "train_samples", *options)
    ]
    return ", ".join(words)


def round_files(data_dir):
    """The round record and every published round's weights in `data_dir`: a new split starts again at round 1."""
    return [Path(data_dir) / ROUNDS_FILE, *sorted(Path(data_dir).glob(ROUND_WEIGHTS_GLOB))]


def write_partitions(out_dir, x_train, y_train, x_test, y_test, parts, initial_weights, config, validation=None):
    """Replace the whole split in `out_dir` at once: client files, validation and test sets, initial weights,
    manifest, figure.

    Nothing lands unless everything was written, so a new partition file never
    sits under an old manifest; client files of an earlier, larger split are removed.
    Returns the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {
        client_file(client_id): npz_bytes(x=x_train[indices], y=y_train[indices])
        for client_id, indices in enumerate(parts, start=1)
    }
    contents[TEST_FILE] = npz_bytes(x=x_test, y=y_test)
    if validation is not None:
        contents[VALIDATION_FILE] = npz_bytes(x=validation[0], y=validation[1])
    contents[INITIAL_WEIGHTS_FILE] = weights_archive_bytes(initial_weights)
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
        **(
            {
                "validation": {
                    "file": VALIDATION_FILE,
                    "num_samples": int(len(validation[1])),
                    "class_histogram": class_histogram(validation[1]),
                }
            }
            if validation is not None
            else {}
        ),
        "initial_weights": {"file": INITIAL_WEIGHTS_FILE, "sha256": weights_sha256(initial_weights)},
        "sha256": {name: sha256_bytes(data) for name, data in contents.items()},
    }
    earlier = [*out_dir.glob("cliente_*.npz"), out_dir / VALIDATION_FILE, *round_files(out_dir)]
    stale = [path for path in earlier if path.name not in contents]
    stale = [path for path in stale if path.exists()]
    with OutputSet(remove=stale) as outputs:
        for name, data in contents.items():
            outputs.write_bytes(out_dir / name, data)
        outputs.write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        save_figure(plot_partition(manifest), outputs.stage(out_dir / PARTITION_FIGURE))
    return manifest


def read_manifest(data_dir):
    """The organizer's manifest.json, checked: it is the truth about clients, counts and file hashes."""
    path = Path(data_dir) / MANIFEST
    try:
        complete_interrupted_set(data_dir)  # a split killed while its files were replaced: finish it first
    except InterruptedSetError as err:
        raise PartitionError(str(err)) from None
    if not path.is_file():
        raise PartitionError(
            f"{path}: no partition found; run split_data.py first (python split_data.py --clients 5 --seed 42)"
        )
    if path.stat().st_size > MANIFEST_LIMIT:
        raise PartitionError(
            f"{path}: {path.stat().st_size:,} bytes, more than any manifest split_data.py writes "
            f"({MANIFEST_LIMIT:,}); run split_data.py again"
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # ValueError: bad JSON, or a 5,000-digit number
        raise PartitionError(f"{path}: corrupted manifest ({type(err).__name__}); run split_data.py again") from None
    problem = manifest_problem(manifest)
    if problem:
        raise PartitionError(f"{path}: not a manifest written by split_data.py ({problem}); run split_data.py again")
    return manifest


def manifest_problem(manifest):
    """What makes `manifest` unusable, or None."""

    def positive_int(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    if not isinstance(manifest, dict):
        return "not a JSON object"
    k = manifest.get("num_clients")
    if not positive_int(k) or k > MAX_CLIENTS:
        return f"num_clients is not an integer in 1..{MAX_CLIENTS:,}"
    clients = manifest.get("clients")
    if not isinstance(clients, dict) or len(clients) != k or set(clients) != {str(c) for c in range(1, k + 1)}:
        return f"clients is not one entry for each of 1..{k}"
    seed = manifest.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32):
        return "seed is not an integer in 0..2^32-1"
    if not all(isinstance(info, dict) and positive_int(info.get("num_samples")) for info in clients.values()):
        return "a client without a positive num_samples"
    if not (isinstance(manifest.get("test"), dict) and positive_int(manifest["test"].get("num_samples"))):
        return "test.num_samples is not a positive integer"
    if "validation" in manifest and not (
        isinstance(manifest["validation"], dict) and positive_int(manifest["validation"].get("num_samples"))
    ):
        return "validation.num_samples is not a positive integer"
    sha = (
        manifest.get("initial_weights", {}).get("sha256") if isinstance(manifest.get("initial_weights"), dict) else None
    )
    if not (isinstance(sha, str) and SHA256_HEX.fullmatch(sha)):
        return "initial_weights.sha256 is not a SHA-256"
    hashes = manifest.get("sha256")
    if not (isinstance(hashes, dict) and all(isinstance(v, str) for v in hashes.values())):
        return "sha256 is not a table of file hashes"
    return None


def load_verified_npz(data_dir, name, manifest):
    """Load one npz from the partition folder after checking its SHA-256 against the manifest."""
    path = Path(data_dir) / name
    if not path.is_file():
        raise PartitionError(f"{path}: missing partition file; run split_data.py first")
    expected = manifest["sha256"].get(name)
    if expected is None or sha256_file(path) != expected:
        raise PartitionError(
            f"{path}: SHA-256 does not match {MANIFEST}; the file is corrupted, run split_data.py again"
        )
    try:
        check_archive_sizes(path)
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:  # ValueError: an object array, a bad header
        raise PartitionError(
            f"{path}: not an archive split_data.py writes ({printable(err, 120)}); run split_data.py again"
        ) from None


def check_archive_sizes(path, limit=ARRAY_LIMIT):
    """ValueError if an array of the .npz at `path` declares more than `limit` bytes or a dtype that holds Python
    objects: read from each member's header, before anything is decompressed into memory."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if len(members) > 1_000:
            raise ValueError(f"{len(members):,} arrays")
        for member in members:
            with archive.open(member) as stream:
                readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                version = np.lib.format.read_magic(stream)
                if version not in readers:
                    raise ValueError(f"{member.filename}: .npy format {version}, not one NumPy writes here")
                shape, _, dtype = readers[version](stream)
            if dtype.hasobject:
                raise ValueError(f"{member.filename} holds Python objects")
            if int(np.prod(shape, dtype=object)) * dtype.itemsize > limit:
                raise ValueError(f"{member.filename} declares {shape} of {dtype}, more than {limit:,} bytes")


def checked_images(arrays, path, expected):
    """(x as float32 images, y) of a data archive, after checking its arrays: PartitionError naming what is wrong."""
    x, y = arrays.get("x"), arrays.get("y")
    problem = None
    if x is None or y is None:
        problem = "it lacks x or y"
    elif x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        problem = f"x is {x.dtype} {x.shape}, not uint8 images of 28 × 28"
    elif y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
        problem = f"y is {y.dtype} {y.shape}, not one integer label per image ({len(x):,})"
    elif len(y) != expected:
        problem = f"it holds {len(y):,} images where the manifest says {expected:,}"
    elif len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        problem = f"labels outside 0..{NUM_CLASSES - 1}"
    if problem:
        raise PartitionError(f"{path}: {problem}; run split_data.py again")
    return as_images(x), y.astype(np.uint8)


def check_client_id(client_id, manifest):
    """Return `client_id` as an int in 1..K, or raise PartitionError saying which ids exist."""
    num_clients = manifest["num_clients"]
    is_number = isinstance(client_id, (int, np.integer)) and not isinstance(client_id, bool)
    if not (is_number or (isinstance(client_id, str) and re.fullmatch(r"\s*[0-9]{1,9}\s*", client_id, re.ASCII))):
        raise PartitionError(f"CLIENT_ID={ascii(client_id)[:40]} is not an integer; choose one of 1..{num_clients}")
    client_id = int(client_id)
    if not 1 <= client_id <= num_clients:
        raise PartitionError(
            f"CLIENT_ID={client_id} is outside 1..{num_clients} (the partition has {num_clients} clients)"
        )
    return client_id


def load_client_data(data_dir, client_id):
    """Return (x, y) of one client: float32 images (n, 28, 28, 1) in [0, 1] and uint8 labels."""
    manifest = read_manifest(data_dir)
    client_id = check_client_id(client_id, manifest)
    arrays = load_verified_npz(data_dir, client_file(client_id), manifest)
    expected = manifest["clients"][str(client_id)]["num_samples"]
    return checked_images(arrays, Path(data_dir) / client_file(client_id), expected)


def load_test_data(data_dir):
    """Return (x_test, y_test), the common test set."""
    manifest = read_manifest(data_dir)
    arrays = load_verified_npz(data_dir, TEST_FILE, manifest)
    return checked_images(arrays, Path(data_dir) / TEST_FILE, manifest["test"]["num_samples"])


def load_validation_data(data_dir):
    """Return (x_validation, y_validation), held out of the training pool; PartitionError if the split has none."""
    manifest = read_manifest(data_dir)
    if not isinstance(manifest.get("validation"), dict) or VALIDATION_FILE not in manifest["sha256"]:
        raise PartitionError(
            f"{Path(data_dir) / MANIFEST}: this split has no validation set (it predates them); run split_data.py again"
        )
    arrays = load_verified_npz(data_dir, VALIDATION_FILE, manifest)
    expected = manifest["validation"].get("num_samples")
    return checked_images(arrays, Path(data_dir) / VALIDATION_FILE, expected)


def load_initial_weights(data_dir):
    """Return (weights, sha256) of the shared round-0 model."""
    manifest = read_manifest(data_dir)
    weights = weights_from_archive(load_verified_npz(data_dir, INITIAL_WEIGHTS_FILE, manifest))
    path, expected = Path(data_dir) / INITIAL_WEIGHTS_FILE, manifest["initial_weights"]["sha256"]
    shapes = [tuple(s) for s in weight_shapes()]
    if [tuple(w.shape) for w in weights] != shapes or any(w.dtype != np.float32 for w in weights):
        raise PartitionError(f"{path}: not float32 weights of the course's CNN (model.py); run split_data.py again")
    if not all(np.all(np.isfinite(w)) for w in weights):
        raise PartitionError(f"{path}: holds NaN or infinite weights; run split_data.py again")
    if weights_sha256(weights) != expected:
        raise PartitionError(
            f"{path}: its weights do not match the manifest's initial_weights.sha256 (a swapped file); "
            "run split_data.py again"
        )
    return weights, expected
