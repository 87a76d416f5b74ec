"""The client-update file (`pesos_cliente_N.pkl`): writing it, and reading it without trusting it.

A pickle is a program, and NumPy's own reconstruction is not a safe boundary, so
update files are read only through `restricted_pickle.load` (an interpreter of
the pickle subset that a dict of float arrays needs, see there), from regular
files, up to a size cap derived from the model (the largest honest encoding). What it returns is then
checked against a schema and against the organizer's manifest, which is the truth about every client:

- the file name is canonical: pesos_cliente_<id>.pkl or pesos_cliente_<id>_fedprox.pkl,
  id in 1..K in ASCII digits without leading zeros;
- client_id equals the file name's id; num_samples equals the manifest's count for it;
- round (1 if absent) is a published round, and initial_weights_sha256 equals
  the hash of that round's starting weights (round 1: the manifest's; a
  self-reported hash: it catches a client that started from other weights by
  mistake, not one that lies);
- weights match model.py's shapes and are finite after the cast to float32;
- the optional fields (mu, epochs, batch_size, seed, versions) have their types
  and bounds; unknown keys are dropped without being looked at.

Format: a dict with client_id, num_samples, weights (float32 arrays in
`model.get_weights()` order), mu, epochs, batch_size, seed,
initial_weights_sha256 and versions. A bare list of arrays (older course
repositories) is read only when the caller allows it (`--allow-legacy`); it is
then weighted by the manifest's count, and nothing checks where it started from.
"""

import hashlib
import math
import os
import pickle
import re
import stat
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from fedmnist import restricted_pickle
from fedmnist.errors import FedMnistError
from fedmnist.files import write_bytes_atomically
from fedmnist.restricted_pickle import PendingArray, describe, is_int, printable

MAX_UPDATE_BYTES = 64 * 1024 * 1024  # whatever the model, no update file is read past this
# An honest update of a model with P float32 parameters is at most 12·4P bytes (float64 at protocol 0, where
# pickle escapes some bytes as 6 characters) and rebuilds at most 4·4P bytes (float64 arrays and their encoded bytes).
FILE_BYTES_PER_PARAMETER, ARRAY_BYTES_PER_PARAMETER, SLACK_BYTES = 48, 16, 1 << 20
PICKLE_PROTOCOL = 4
UPDATE_PREFIX = "pesos_cliente_"
UPDATE_NAME = re.compile(r"pesos_cliente_([1-9][0-9]{0,8})(_fedprox)?\.pkl", re.ASCII)
MAX_REASON_CHARS = 300
MAX_VERSION_ENTRIES, MAX_VERSION_CHARS = 8, 64
SHA256_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)


class UpdateError(FedMnistError, ValueError):
    """A client update that cannot be used; the message names the file and the reason, in one bounded line."""


@dataclass
class ClientUpdate:
    path: Path
    client_id: int
    weights: list
    num_samples: int  # the manifest's count for this client (self-reported counts must equal it)
    initial_weights_sha256: str | None  # None for a legacy bare list
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Expected:
    """What the model and the organizer's manifest say every valid update must be."""

    shapes: tuple
    num_samples: dict  # client id -> its partition's size; its keys are the valid ids
    initial_weights_sha256: str  # round 1's starting weights (the manifest's)
    allow_legacy: bool = False
    round_starts: dict = None  # {round: its starting weights' SHA-256} of every published round (None: round 1's)
    round: int | None = 1  # the round being aggregated; None: any published round (the caller picks one after)

    def __post_init__(self):
        if self.round_starts is None:
            object.__setattr__(self, "round_starts", {1: self.initial_weights_sha256})

    @classmethod
    def from_manifest(cls, manifest, shapes, allow_legacy=False, round_starts=None, round_number=1):
        """`round_starts` and `round_number`: what fedmnist/rounds.py says was published, and the round compared."""
        counts = {int(cid): info["num_samples"] for cid, info in manifest["clients"].items()}
        sha = manifest["initial_weights"]["sha256"]
        starts = dict(round_starts or {1: sha})
        return cls(tuple(tuple(s) for s in shapes), counts, sha, allow_legacy, starts, round_number)

    @property
    def num_clients(self):
        return len(self.num_samples)

    @property
    def num_parameters(self):
        return sum(math.prod(shape) for shape in self.shapes)

    @property
    def max_file_bytes(self):
        return min(MAX_UPDATE_BYTES, FILE_BYTES_PER_PARAMETER * self.num_parameters + SLACK_BYTES)

    @property
    def max_array_bytes(self):
        return ARRAY_BYTES_PER_PARAMETER * self.num_parameters + SLACK_BYTES


def update_filename(client_id, fedprox=False):
    return f"{UPDATE_PREFIX}{client_id}{'_fedprox' if fedprox else ''}.pkl"


def display(path):
    """A file's name as it may appear in one log line and in resultados.json: the name only (never the instructor's
    absolute path), control and non-ASCII characters escaped, length capped."""
    return printable(Path(path).name if isinstance(path, (str, Path)) else path, 120)


def weights_sha256(weights):
    """Fingerprint of a list of arrays: their shapes and float32 values, in order."""
    digest = hashlib.sha256()
    for w in weights:
        w = np.ascontiguousarray(w, dtype=np.float32)
        digest.update(repr(w.shape).encode())
        digest.update(w.tobytes())
    return digest.hexdigest()


def library_versions():
    """The versions an update was trained with (TensorFlow under either of its distribution names)."""
    versions = {"numpy": np.__version__}
    for name, distributions in (("tensorflow", ("tensorflow", "tensorflow-cpu")), ("keras", ("keras",))):
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions


def write_update(
    path, *, client_id, num_samples, weights, mu, epochs, batch_size, seed, initial_weights_sha256, round_number=1
):
    """Pickle one client's update atomically, in the format `read_update` expects; `initial_weights_sha256` is the
    hash of the weights round `round_number` started from."""
    update = {
        "round": int(round_number),
        "client_id": int(client_id),
        "num_samples": int(num_samples),
        "weights": [np.asarray(w, dtype=np.float32) for w in weights],
        "mu": float(mu),
        "epochs": int(epochs),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "initial_weights_sha256": str(initial_weights_sha256),
        "versions": library_versions(),
    }
    write_bytes_atomically(path, pickle.dumps(update, protocol=PICKLE_PROTOCOL))


# ---------------------------------------------------------------------------
# The folder: canonical names only
# ---------------------------------------------------------------------------


@dataclass
class UpdateFolder:
    plain: list  # paths of pesos_cliente_<id>.pkl, by id
    fedprox: list  # paths of pesos_cliente_<id>_fedprox.pkl, by id
    rejected: list  # (path, reason) of every other pesos_cliente_* entry


def scan_update_folder(folder, num_clients):
    """Sort the `pesos_cliente_*` entries of `folder` into plain and FedProx updates of clients 1..K, and the rest."""
    found = UpdateFolder([], [], [])
    with os.scandir(folder) as entries:
        names = sorted(entry.name for entry in entries if entry.name.startswith(UPDATE_PREFIX))
    for name in names:
        path = Path(folder) / name
        match = UPDATE_NAME.fullmatch(name)
        if not match:
            found.rejected.append(
                (
                    path,
                    f"{display(path)}: not an update file name; the notebook writes "
                    "pesos_cliente_<id>.pkl or pesos_cliente_<id>_fedprox.pkl, "
                    f"id 1..{num_clients} without leading zeros",
                )
            )
        elif int(match.group(1)) > num_clients:
            found.rejected.append(
                (path, f"{display(path)}: client {match.group(1)} is not in the partition (clients 1..{num_clients})")
            )
        else:
            (found.fedprox if match.group(2) else found.plain).append(path)
    found.plain.sort(key=client_id_from_name)
    found.fedprox.sort(key=client_id_from_name)
    return found


def client_id_from_name(path):
    match = UPDATE_NAME.fullmatch(Path(path).name)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------
# Reading one file
# ---------------------------------------------------------------------------

FILE_KINDS = {
    stat.S_ISDIR: "a folder",
    stat.S_ISFIFO: "a named pipe",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def file_kind(mode):
    return next((kind for test, kind in FILE_KINDS.items() if test(mode)), "not a regular file")


def read_capped(path, max_bytes):
    """The bytes of the regular file at `path` (a symlink to one is followed), refusing anything over `max_bytes`.

    Special files are refused before they are opened, and again after (the path
    may change in between); opening never blocks, and at most max_bytes + 1 bytes
    are read whatever the file claims its size is.
    """
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise UpdateError(f"{display(path)}: {file_kind(mode)}, not a regular file; an update is a plain .pkl file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise UpdateError(
                    f"{display(path)}: {file_kind(mode)}, not a regular file; an update is a plain .pkl file"
                )
            data = file.read(max_bytes + 1)
    except OSError as err:
        raise UpdateError(f"{display(path)}: cannot read ({err.strerror})") from None
    if len(data) > max_bytes:
        raise UpdateError(f"{display(path)}: larger than the {max_bytes}-byte cap for an update of this model")
    return data


def read_update(path, expected, max_bytes=None):
    """Load and validate one update file; raise UpdateError (one bounded line) on anything unusable.

    Files larger than any honest update of this model (`expected.max_file_bytes`) are refused unread.
    """
    path = Path(path)
    data = read_capped(path, max_bytes or expected.max_file_bytes)
    return decode_update(data, path, expected, client_id_from_name(path))


def decode_update(data, source, expected, name_id):
    """Validate an update's bytes; `name_id` is the client id its file name claims. Every failure is an UpdateError."""
    try:
        return check_payload(unpickle(data, source, expected.max_array_bytes), source, expected, name_id)
    except UpdateError as err:
        raise UpdateError(str(err)[:MAX_REASON_CHARS]) from None
    # Nothing one file holds may abort the run, MemoryError and RecursionError included.
    except Exception as err:  # noqa: BLE001
        raise UpdateError(
            f"{display(source)}: could not be checked ({type(err).__name__}); ask the client to send it again"
        ) from None


def unpickle(data, source, max_array_bytes):
    if not data:
        raise UpdateError(f"{display(source)}: empty file; ask the client to send its update again")
    try:
        return restricted_pickle.load(data, max_array_bytes)
    except restricted_pickle.PickleRefused as err:
        raise UpdateError(f"{display(source)}: {err}") from None
    except Exception as err:  # noqa: BLE001 - whatever pickletools raises on malformed bytes
        raise UpdateError(
            f"{display(source)}: not a valid update pickle ({type(err).__name__}: {printable(err, 100)})"
        ) from None


def check_payload(payload, source, expected, name_id):
    name = display(source)
    if type(payload) is list:
        if not expected.allow_legacy:
            raise UpdateError(
                f"{name}: a bare list of arrays (older format) carries no client id, count or initial-weights hash; "
                f"re-run the notebook, or pass --allow-legacy to weigh it by the manifest's count"
            )
        client_id = check_client_id(name_id, name, expected)
        return ClientUpdate(
            Path(source),
            client_id,
            check_arrays(payload, expected.shapes, name),
            expected.num_samples[client_id],
            None,
            {"legacy": True, "round": 1},
        )
    if type(payload) is not dict:
        raise UpdateError(f"{name}: expected a dict of the update's fields, got {describe(payload)}")

    missing = [key for key in ("client_id", "num_samples", "weights", "initial_weights_sha256") if key not in payload]
    if missing:
        raise UpdateError(f"{name}: missing field(s) {', '.join(missing)}; was it written by local_training.ipynb?")
    client_id = payload["client_id"]
    if not is_int(client_id):
        raise UpdateError(f"{name}: client_id must be an integer, got {describe(client_id)}")
    if name_id is not None and client_id != name_id:
        raise UpdateError(f"{name}: client_id ({describe(client_id)}) disagrees with the file name (client {name_id})")
    client_id = check_client_id(client_id, name, expected)
    num_samples, truth = payload["num_samples"], expected.num_samples[client_id]
    if not is_int(num_samples) or num_samples != truth:
        raise UpdateError(
            f"{name}: num_samples is {describe(num_samples)}, but the manifest gives client {client_id} "
            f"{truth} examples; FedAvg weights each client by its partition's size"
        )
    sha = payload["initial_weights_sha256"]
    if not (isinstance(sha, str) and SHA256_HEX.fullmatch(sha)):
        raise UpdateError(f"{name}: initial_weights_sha256 must be 64 hexadecimal digits, got {describe(sha)}")
    round_number = check_round(payload.get("round", 1), name, expected)
    if sha != expected.round_starts[round_number]:
        start = "split_data.py's pesos_iniciales.npz" if round_number == 1 else f"pesos_ronda_{round_number}.npz"
        raise UpdateError(
            f"{name}: started from other weights (SHA-256 {sha[:12]}…, expected "
            f"{expected.round_starts[round_number][:12]}…); every client of round {round_number} starts from {start}"
        )
    metadata = {
        "client_id": client_id,
        "num_samples": num_samples,
        "initial_weights_sha256": sha,
        "round": round_number,
        **check_optional_fields(payload, name),
    }
    return ClientUpdate(
        Path(source), client_id, check_arrays(payload["weights"], expected.shapes, name), truth, sha, metadata
    )


def check_round(declared, name, expected):
    """The update's round (older updates: 1); UpdateError unless it is published, and the one aggregated if set."""
    if not (is_int(declared) and 1 <= declared <= 10**6):
        raise UpdateError(f"{name}: round must be an integer in 1..10^6, got {describe(declared)}")
    if declared not in expected.round_starts:
        raise UpdateError(
            f"{name}: trained in round {declared}, which this data folder has not published "
            f"(rounds 1..{max(expected.round_starts)}); use the instructor's data folder"
        )
    if expected.round is not None and declared != expected.round:
        raise UpdateError(other_round(name, declared, expected.round))
    return declared


def other_round(name, declared, aggregated):
    """The one line that refuses an update of another round than the one aggregated."""
    return (
        f"{name}: trained in round {declared}, but this aggregation is round {aggregated}; train it again "
        f"with ROUND = {aggregated}, or compare round {declared} with --round {declared}"
    )


def check_client_id(client_id, name, expected):
    if client_id is None or client_id not in expected.num_samples:
        raise UpdateError(
            f"{name}: client {describe(client_id)} is not in the partition (clients 1..{expected.num_clients})"
        )
    return client_id


def check_optional_fields(payload, name):
    """The optional fields the notebook writes, each checked; keys outside the schema are ignored."""
    checked = {}
    for key, valid, requirement in OPTIONAL_FIELDS:
        if key in payload:
            if not valid(payload[key]):
                raise UpdateError(f"{name}: {key} must be {requirement}, got {describe(payload[key])}")
            checked[key] = dict(payload[key]) if key == "versions" else payload[key]
    return checked


def _is_versions(value):
    return (
        type(value) is dict
        and len(value) <= MAX_VERSION_ENTRIES
        and all(
            len(k) <= MAX_VERSION_CHARS
            and type(v) is str
            and len(v) <= MAX_VERSION_CHARS
            and v.isprintable()
            and k.isprintable()
            for k, v in value.items()
        )
    )


OPTIONAL_FIELDS = (
    (
        "mu",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
        "a finite number >= 0",
    ),
    ("epochs", lambda v: is_int(v) and 1 <= v <= 10**6, "an integer in 1..10^6"),
    ("batch_size", lambda v: is_int(v) and 1 <= v <= 10**9, "an integer in 1..10^9"),
    ("seed", lambda v: is_int(v) and -(2**63) <= v < 2**64, "a 64-bit integer"),
    ("versions", _is_versions, f"a dict of at most {MAX_VERSION_ENTRIES} short strings"),
)


def check_arrays(items, shapes, name):
    """The arrays of a decoded update: each must have been rebuilt completely.

    Then validate_weights checks their count, dtype, shapes and finiteness.
    """
    if type(items) is not list:
        raise UpdateError(f"{name}: 'weights' must be a list of arrays, got {describe(items)}")
    arrays = []
    for i, item in enumerate(items):
        if not isinstance(item, PendingArray) or item.array is None:
            raise UpdateError(f"{name}: weight {i} is {describe(item)}, not a NumPy float array")
        arrays.append(item.array)
    return validate_weights(arrays, shapes, name)


def validate_weights(weights, expected_shapes, source):
    """Return the weights as float32 arrays, or raise UpdateError naming the first problem.

    Finiteness is checked after the cast: a float64 value of 1e300 is finite but
    becomes inf in float32.
    """
    if not isinstance(weights, list):
        raise UpdateError(f"{source}: 'weights' must be a list of arrays, got {type(weights).__name__}")
    if len(weights) != len(expected_shapes):
        raise UpdateError(
            f"{source}: {len(weights)} weight arrays, the model has {len(expected_shapes)}; "
            "was it trained with model.py's build_model()?"
        )
    checked = []
    for i, (w, shape) in enumerate(zip(weights, expected_shapes)):
        if not isinstance(w, np.ndarray):
            raise UpdateError(f"{source}: weight {i} is a {type(w).__name__}, not a NumPy array")
        if not (w.dtype.kind == "f" and w.dtype.itemsize in (4, 8)):  # either byte order
            raise UpdateError(
                f"{source}: weight {i} has dtype {w.dtype}; only float32 (or float64) arrays are accepted"
            )
        if w.shape != tuple(shape):
            raise UpdateError(
                f"{source}: weight {i} has shape {w.shape}, the model expects {tuple(shape)}; "
                "was it trained with model.py's build_model()?"
            )
        with np.errstate(over="ignore"):
            w = w.astype(np.float32, copy=False)
        if not np.isfinite(w).all():
            raise UpdateError(
                f"{source}: weight {i} contains NaN or Inf in float32; the client's training diverged or crashed"
            )
        checked.append(w)
    return checked


# ---------------------------------------------------------------------------
# Many files
# ---------------------------------------------------------------------------


def iter_valid_updates(paths, expected, rejected):
    """Yield each valid update in turn, reading its file only when it is needed; append (path, reason) to `rejected`.

    Besides each file's own checks, refuses a second update for the same client.
    Only ids are remembered, so a consumer like FedAvg holds one update at a time.
    """
    seen_ids = set()
    for path in paths:
        try:
            update = read_update(path, expected)
            if update.client_id in seen_ids:
                raise UpdateError(
                    f"{display(path)}: a second update for client {update.client_id}; each client may send one"
                )
        except UpdateError as err:
            rejected.append((Path(path), str(err)))
            continue
        seen_ids.add(update.client_id)
        yield update


def load_updates(paths, expected):
    """Read every path; return (accepted updates, rejected [(path, reason)])."""
    rejected = []
    accepted = list(iter_valid_updates(paths, expected, rejected))
    return accepted, rejected
