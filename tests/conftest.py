"""Shared test data: real MNIST, loaded once through the project's verified loader."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist():
    from fedmnist.mnist import load_mnist_uint8

    return load_mnist_uint8(log=lambda message: None)


# The tiny real-MNIST split: 3 clients, 600 training and 200 test images
TINY_SPLIT = ("--clients", "3", "--seed", "7", "--train-samples", "600", "--test-samples", "200")


@pytest.fixture(scope="session")
def tiny_partition(tmp_path_factory):
    """A real-MNIST partition for 3 clients: 600 training and 200 test images."""
    out = tmp_path_factory.mktemp("partition")
    run_script("split_data.py", *TINY_SPLIT, "--out", str(out), check=True)
    return out


@pytest.fixture(scope="session")
def model_shapes():
    from model import weight_shapes

    return weight_shapes()


def run_script(script, *args, check=False, cwd=REPO):
    """Run one of the project's CLIs as a user would; returns the CompletedProcess."""
    done = subprocess.run(
        [sys.executable, str(REPO / script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{script} failed:\n{done.stdout}\n{done.stderr}")
    return done


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def perturbed(weights, scale, seed):
    rng = np.random.default_rng(seed)
    return [w + scale * rng.standard_normal(w.shape).astype(np.float32) for w in weights]
