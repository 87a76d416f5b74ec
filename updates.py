"""The client-update file (`pesos_cliente_N.pkl`): writing it, and reading it without trusting it.

A pickle is a program: `pickle.load` on a crafted file runs any command. Updates
are therefore read only through `RestrictedUnpickler`, which resolves just the
NumPy globals that a dict or list of arrays needs, and then validated against the
model's shapes before anything aggregates them.

Format: a dict with client_id, num_samples, weights (float32 arrays in
`model.get_weights()` order), mu, epochs, batch_size, seed,
initial_weights_sha256 and versions. A bare list of arrays (older course
repositories) is accepted too; such clients are then weighted equally.
"""

import hashlib
import io
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atomic import write_bytes_atomically

MAX_UPDATE_BYTES = 64 * 1024 * 1024
PICKLE_PROTOCOL = 4
UPDATE_NAME = re.compile(r"^pesos_cliente_(\d+)(_fedprox)?\.pkl$")
ALLOWED_GLOBALS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),  # files written by NumPy 1.x
    ("numpy._core.numeric", "_frombuffer"),  # protocol 5 (in-band buffers)
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})


class UpdateError(ValueError):
    """A client update that cannot be used; the message names the file and the reason."""


@dataclass
class ClientUpdate:
    path: Path
    client_id: int
    weights: list
    num_samples: int | None  # None for a legacy bare list: weighted equally
    initial_weights_sha256: str | None
    metadata: dict = field(default_factory=dict)


def update_filename(client_id, fedprox=False):
    return f"pesos_cliente_{client_id}{'_fedprox' if fedprox else ''}.pkl"


def weights_sha256(weights):
    """Fingerprint of a list of arrays: their shapes and float32 values, in order."""
    digest = hashlib.sha256()
    for w in weights:
        w = np.ascontiguousarray(w, dtype=np.float32)
        digest.update(repr(w.shape).encode())
        digest.update(w.tobytes())
    return digest.hexdigest()


def library_versions():
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def write_update(path, *, client_id, num_samples, weights, mu, epochs, batch_size, seed, initial_weights_sha256):
    """Pickle one client's update atomically, in the format `read_update` expects."""
    update = {
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
# Restricted reading
# ---------------------------------------------------------------------------

def _latin1_bytes(text, encoding):
    """What protocols 0-2 call to rebuild bytes: `_codecs.encode(str, "latin1")`, and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only as encode(str, 'latin1')")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the NumPy globals needed to rebuild plain arrays."""

    def __init__(self, file, source):
        super().__init__(file)
        self.source = source

    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):  # protocols 0-2 encode raw bytes this way
            return _latin1_bytes
        raise UpdateError(f"{self.source}: refused global {module}.{name}: an update may contain only NumPy arrays")

    def persistent_load(self, pid):
        raise UpdateError(f"{self.source}: refused persistent id: an update may contain only NumPy arrays")


def unpickle_restricted(data, source):
    """Unpickle `data` through RestrictedUnpickler; every failure becomes an UpdateError."""
    if not data:
        raise UpdateError(f"{source}: empty file; ask the client to send its update again")
    try:
        return RestrictedUnpickler(io.BytesIO(data), source).load()
    except UpdateError:
        raise
    except EOFError:
        raise UpdateError(f"{source}: truncated pickle (ended early); ask the client to send its update again") from None
    except Exception as err:  # noqa: BLE001 - whatever a malformed pickle raises, it is one kind of user error
        raise UpdateError(f"{source}: not a valid update pickle ({type(err).__name__}: {str(err)[:120]})") from None


def validate_weights(weights, expected_shapes, source):
    """Return the weights as float32 arrays, or raise UpdateError naming the first problem."""
    if not isinstance(weights, list):
        raise UpdateError(f"{source}: 'weights' must be a list of arrays, got {type(weights).__name__}")
    if len(weights) != len(expected_shapes):
        raise UpdateError(f"{source}: {len(weights)} weight arrays, the model has {len(expected_shapes)}; was it trained with model.py's build_model()?")
    checked = []
    for i, (w, shape) in enumerate(zip(weights, expected_shapes)):
        if not isinstance(w, np.ndarray):
            raise UpdateError(f"{source}: weight {i} is a {type(w).__name__}, not a NumPy array")
        if w.dtype not in (np.float32, np.float64):
            raise UpdateError(f"{source}: weight {i} has dtype {w.dtype}; only float32 (or float64) arrays are accepted")
        if w.shape != tuple(shape):
            raise UpdateError(f"{source}: weight {i} has shape {w.shape}, the model expects {tuple(shape)}; was it trained with model.py's build_model()?")
        if not np.isfinite(w).all():
            raise UpdateError(f"{source}: weight {i} contains NaN or Inf; the client's training diverged or crashed")
        checked.append(w.astype(np.float32, copy=False))
    return checked


def client_id_from_name(path):
    match = UPDATE_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def read_update(path, expected_shapes, max_bytes=MAX_UPDATE_BYTES):
    """Load and validate one update file; raise UpdateError on anything unusable."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UpdateError(f"{path}: {size} bytes exceeds the {max_bytes}-byte cap for an update")
        data = path.read_bytes()
    except OSError as err:
        raise UpdateError(f"{path}: cannot read ({err.strerror})") from None
    return decode_update(data, path, expected_shapes, client_id_from_name(path))


def decode_update(data, source, expected_shapes, name_id=None):
    """Unpickle (restricted) and validate an update's bytes; `name_id` is the client id its file name claims."""
    payload = unpickle_restricted(data, source)

    if isinstance(payload, list):
        return ClientUpdate(source, name_id, validate_weights(payload, expected_shapes, source), None, None, {"legacy": True})
    if not isinstance(payload, dict):
        raise UpdateError(f"{source}: expected a dict (or a bare list of arrays), got {type(payload).__name__}")

    missing = {"client_id", "num_samples", "weights"} - payload.keys()
    if missing:
        raise UpdateError(f"{source}: missing key(s) {', '.join(sorted(missing))}")
    client_id, num_samples = payload["client_id"], payload["num_samples"]
    if isinstance(client_id, bool) or not isinstance(client_id, int):
        raise UpdateError(f"{source}: client_id must be an integer, got {client_id!r}")
    if name_id is not None and client_id != name_id:
        raise UpdateError(f"{source}: client_id {client_id} disagrees with the file name (client {name_id})")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise UpdateError(f"{source}: num_samples must be a positive integer, got {num_samples!r}")
    sha = payload.get("initial_weights_sha256")
    if sha is not None and not isinstance(sha, str):
        raise UpdateError(f"{source}: initial_weights_sha256 must be a string")
    metadata = {k: v for k, v in payload.items() if k not in ("weights",) and _is_plain(v)}
    return ClientUpdate(source, client_id, validate_weights(payload["weights"], expected_shapes, source), num_samples, sha, metadata)


def _is_plain(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, str)) or (isinstance(value, float) and math.isfinite(value))


def find_update_files(folder, fedprox=False):
    """The update files of one kind in `folder`, sorted by client id."""
    folder = Path(folder)
    suffix = bool(fedprox)
    found = [p for p in folder.glob("pesos_cliente_*.pkl") if (m := UPDATE_NAME.match(p.name)) and bool(m.group(2)) == suffix]
    return sorted(found, key=client_id_from_name)


def iter_valid_updates(paths, expected_shapes, rejected, initial_weights_sha256=None):
    """Yield each valid update in turn, reading its file only when it is needed; append (path, reason) to `rejected`.

    Besides each file's own checks, refuses duplicate client ids and updates that
    started from other initial weights than `initial_weights_sha256` (or, when it
    is None, than the first update that records one). Only ids and one digest
    are remembered, so a consumer like FedAvg holds one update at a time.
    """
    seen_ids, reference = set(), initial_weights_sha256
    for path in paths:
        try:
            update = read_update(path, expected_shapes)
            if update.client_id is not None and update.client_id in seen_ids:
                raise UpdateError(f"{path}: duplicate client_id {update.client_id}; each client may send one update")
            if update.initial_weights_sha256 is not None:
                reference = reference or update.initial_weights_sha256
                if update.initial_weights_sha256 != reference:
                    raise UpdateError(
                        f"{path}: started from other initial weights (SHA-256 {update.initial_weights_sha256[:12]}…, "
                        f"expected {reference[:12]}…); every client must start from split_data.py's pesos_iniciales.npz"
                    )
        except UpdateError as err:
            rejected.append((Path(path), str(err)))
            continue
        seen_ids.add(update.client_id)
        yield update


def load_updates(paths, expected_shapes, initial_weights_sha256=None):
    """Read every path; return (accepted updates, rejected [(path, reason)])."""
    rejected = []
    accepted = list(iter_valid_updates(paths, expected_shapes, rejected, initial_weights_sha256))
    return accepted, rejected
