import gzip

import numpy as np
import pytest

from fedmnist import mnist as mnist_data
from fedmnist.mnist import (
    IDX_SHA256,
    MnistError,
    encode_idx,
    ensure_mnist,
    read_idx_folder,
    read_user_path,
    sha256_bytes,
)


def test_loader_returns_verified_real_mnist(mnist):
    x_train, y_train, x_test, y_test = mnist
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_float_loader_scales_to_unit_interval():
    x_train, _, x_test, _ = mnist_data.load_mnist(log=lambda m: None)
    assert x_train.shape == (60000, 28, 28, 1) and x_train.dtype == np.float32
    assert x_train.min() == 0.0 and x_train.max() == 1.0


def test_idx_encoding_reproduces_the_original_files(mnist):
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for name, array in zip(names, mnist):
        assert sha256_bytes(encode_idx(array)) == IDX_SHA256[name]


@pytest.fixture
def idx_folder(tmp_path):
    source = ensure_mnist(log=lambda m: None)
    folder = tmp_path / "idx"
    folder.mkdir()
    for name in IDX_SHA256:
        (folder / name).write_bytes((source / name).read_bytes())
    return folder


def test_corrupted_idx_file_is_rejected(idx_folder):
    path = idx_folder / "t10k-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[100] = (data[100] + 1) % 10
    path.write_bytes(bytes(data))
    with pytest.raises(MnistError, match="SHA-256 mismatch for t10k-labels-idx1-ubyte"):
        read_idx_folder(idx_folder)


def test_gzipped_idx_files_are_accepted(idx_folder):
    for name in IDX_SHA256:
        raw = idx_folder / name
        (idx_folder / f"{name}.gz").write_bytes(gzip.compress(raw.read_bytes(), compresslevel=1))
        raw.unlink()
    assert set(read_idx_folder(idx_folder)) == set(IDX_SHA256)


def test_wrong_npz_is_rejected(tmp_path):
    fake = tmp_path / "mnist.npz"
    np.savez(fake, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(MnistError, match="SHA-256 mismatch for Keras's mnist.npz"):
        read_user_path(fake)


def test_no_working_source_lists_every_attempt(tmp_path, monkeypatch):
    def unavailable(*_):
        raise MnistError("unavailable in this test")

    monkeypatch.setattr(mnist_data, "read_from_keras", unavailable)
    monkeypatch.setattr(mnist_data, "read_from_npm", unavailable)
    monkeypatch.delenv("MNIST_PATH", raising=False)
    with pytest.raises(MnistError) as caught:
        ensure_mnist(None, cache_dir=tmp_path / "cache", log=lambda m: None)
    message = str(caught.value)
    assert "Keras" in message and "npm" in message and "--mnist" in message


def test_a_missing_explicit_path_is_an_error_even_with_a_cache(tmp_path):
    with pytest.raises(MnistError, match="missing: no such file or folder \\(given with --mnist or MNIST_PATH\\)"):
        ensure_mnist(tmp_path / "missing", log=lambda m: None)
