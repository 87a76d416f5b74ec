"""The notebook: a tagged parameters cell whose defaults match fedmnist/defaults.py, served by make notebook."""

import ast
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request

import nbformat
import pytest

from fedmnist import defaults
from conftest import REPO


def parameters_cell():
    notebook = nbformat.read(REPO / "local_training.ipynb", as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and notebook.cells.index(tagged[0]) == 1  # the first code cell
    return tagged[0]


def test_parameters_cell_holds_the_documented_constants():
    source = parameters_cell().source
    names = [node.targets[0].id for node in ast.parse(source).body]
    assert names == [
        "CLIENT_ID", "ROUND", "EPOCHS", "BATCH_SIZE", "MU", "SEED", "LABEL_FLIP", "DATA_DIR", "OUT_DIR", "REPO_URL"
    ]
    assert all("#" in line for line in source.splitlines())


def test_notebook_defaults_match_client_defaults():
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(parameters_cell().source).body}
    assert (values["EPOCHS"], values["BATCH_SIZE"], values["MU"]) == (defaults.EPOCHS, defaults.BATCH_SIZE, defaults.MU)


def test_notebook_has_no_stored_outputs():
    notebook = nbformat.read(REPO / "local_training.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


@pytest.mark.slow
def test_make_notebook_serves_the_notebook_with_the_projects_kernel(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    args = f"--no-browser --port={port} --IdentityProvider.token={token}"
    log = open(tmp_path / "jupyter.log", "wb")  # a file, not a pipe nobody reads while the server runs
    server = subprocess.Popen(
        ["make", "--no-print-directory", "notebook", f"NOTEBOOK_ARGS={args}"],
        cwd=REPO,
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path)},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        notebook = get_json(f"http://127.0.0.1:{port}/api/contents/local_training.ipynb?token={token}", server)
        kernels = get_json(f"http://127.0.0.1:{port}/api/kernelspecs?token={token}", server)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
    assert notebook["type"] == "notebook" and notebook["content"]["cells"][1]["metadata"]["tags"] == ["parameters"]
    assert "fedmnist" in kernels["kernelspecs"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url, server, timeout=120):
    """GET `url` once the server answers; fail with its output if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(
                f"make notebook exited with code {server.returncode} before answering; see jupyter.log"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no answer from {url.split('?')[0]} within {timeout} s")
