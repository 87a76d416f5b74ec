"""The notebook's shape: a tagged parameters cell whose defaults match fedmnist/defaults.py."""

import ast

import nbformat

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
    assert names == ["CLIENT_ID", "EPOCHS", "BATCH_SIZE", "MU", "SEED", "LABEL_FLIP", "DATA_DIR", "OUT_DIR", "REPO_URL"]
    assert all("#" in line for line in source.splitlines())


def test_notebook_defaults_match_client_defaults():
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(parameters_cell().source).body}
    assert (values["EPOCHS"], values["BATCH_SIZE"], values["MU"]) == (defaults.EPOCHS, defaults.BATCH_SIZE, defaults.MU)


def test_notebook_has_no_stored_outputs():
    notebook = nbformat.read(REPO / "local_training.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
