"""The layout's rules, checked on the source: scripts are entry points, the library stands alone, imports on top."""

import ast
import importlib
import inspect
import json
import pkgutil
import re
import subprocess

import pytest

from conftest import REPO

import fedmnist
from fedmnist.errors import FedMnistError

SOURCES = [REPO / p for p in subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                                            check=True).stdout.split() if not p.startswith("tests/")]
# Imports kept inside a function on purpose: an optional dependency, or a slow one only one path needs.
DEFERRED = {("fedmnist/mnist.py", "keras"),  # only the Keras download source needs TensorFlow
            ("benchmarks/aggregation.py", "flwr.server.strategy"),  # optional: the Flower columns
            ("fedmnist/tensorflow_logs.py", "keras"),  # imported while descriptor 2 is discarded
            ("fedmnist/tensorflow_logs.py", "tensorflow")}


def module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tree(path):
    return ast.parse(path.read_text(), filename=str(path))


def imported_modules(syntax):
    """(module, node) for every import: `from a.b import c` gives a.b and a.b.c (c may be a module)."""
    for node in ast.walk(syntax):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, node
            yield from ((f"{node.module}.{alias.name}", node) for alias in node.names)


def has_main_block(syntax):
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in syntax.body)


def entry_points():
    return {module_name(path) for path in SOURCES if has_main_block(tree(path))}


def test_no_entry_point_is_imported_by_another_module():
    scripts = entry_points()
    assert {"split_data", "global_aggregation", "demo", "experiments.simulation"} <= scripts
    # experiments/ is no package: a script there could only be imported by its bare name
    names = scripts | {name.removeprefix("experiments.") for name in scripts if name.startswith("experiments.")}
    offenders = [(str(path.relative_to(REPO)), name) for path in SOURCES
                 for name, _ in imported_modules(tree(path)) if name in names]
    assert offenders == []


@pytest.mark.parametrize("path", [p for p in SOURCES if p.is_relative_to(REPO / "fedmnist")],
                         ids=lambda p: p.name)
def test_the_library_imports_only_itself_model_and_installed_packages(path):
    syntax = tree(path)
    assert not has_main_block(syntax)
    local = {"split_data", "global_aggregation", "demo", "experiments", "benchmarks"}
    assert [name for name, _ in imported_modules(syntax) if name.split(".")[0] in local] == []


@pytest.mark.parametrize("module", ["fedmnist/aggregation.py", "fedmnist/strategies.py", "fedmnist/partition.py"])
def test_pure_modules_never_import_keras_or_tensorflow(module):
    names = {name.split(".")[0] for name, _ in imported_modules(tree(REPO / module))}
    assert not names & {"keras", "tensorflow", "model"}


def test_imports_sit_at_the_top_of_each_module():
    nested = []
    for path in SOURCES:
        syntax = tree(path)
        top = {id(node) for node in syntax.body}
        for node in ast.walk(syntax):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if (str(path.relative_to(REPO)), name) not in DEFERRED:
                    nested.append((str(path.relative_to(REPO)), node.lineno, name))
    assert nested == []


def test_lines_are_at_most_120_characters():
    long = [(str(path.relative_to(REPO)), number) for path in SOURCES + sorted((REPO / "tests").glob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), start=1) if len(line) > 120]
    assert long == []


def test_no_committed_result_names_a_machine_path():
    """Results are read on other machines: a recorded path is relative to the project, never /home/… or C:\\…"""
    tracked = subprocess.run(["git", "ls-files", "results"], capture_output=True, text=True, cwd=REPO, check=True)
    absolute = []

    def walk(value, where):
        if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"[A-Za-z]:\\", value)):
            absolute.append(where)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}/{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}/{index}")

    for name in tracked.stdout.split():
        if name.endswith(".json"):
            walk(json.loads((REPO / name).read_text()), name + "#")
    assert absolute == []


def test_model_py_is_the_cnn_alone():
    """model.py imports Keras and nothing of the project, which imports it (never the other way round)."""
    imported = set()
    for node in ast.walk(tree(REPO / "model.py")):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported == {"keras"}


@pytest.mark.parametrize("path", [p for p in SOURCES if p.is_relative_to(REPO / "fedmnist")
                                  and not p.is_relative_to(REPO / "fedmnist" / "studies")], ids=lambda p: p.name)
def test_the_course_core_never_imports_the_studies(path):
    """Two layers: fedmnist/studies/ imports the core; the core (and its Flower app) never imports a study."""
    assert [name for name, _ in imported_modules(tree(path)) if name.startswith("fedmnist.studies")] == []


def test_every_error_of_the_project_is_one_kind():
    """Entry points catch FedMnistError; each concept raises its own subclass of it (OSError's stay OSErrors)."""
    errors = []
    for module in pkgutil.walk_packages(fedmnist.__path__, "fedmnist."):
        if module.name.startswith("fedmnist.flower.") and module.name != "fedmnist.flower.credentials":
            continue  # the Flower apps import flwr at load; their errors are the ones below
        for name, value in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if name.endswith("Error") and value.__module__ == module.name and not issubclass(value, OSError):
                errors.append(value)
    assert len(errors) >= 12 and [e for e in errors if not issubclass(e, FedMnistError)] == []


def test_the_student_s_reading_path_in_the_readme_stays_an_afternoon():
    """README → model.py → notebook → global_aggregation.py → the core modules they call, under 3,500 lines."""
    readme = (REPO / "README.md").read_text()
    path = re.search(r"<!-- ruta -->\n(.*?)<!-- /ruta -->", readme, flags=re.DOTALL).group(1)
    files = re.findall(r"^\d+\. `([^`]+)`", path, flags=re.MULTILINE)
    assert files[:3] == ["model.py", "local_training.ipynb", "global_aggregation.py"]
    notebook = json.loads((REPO / "local_training.ipynb").read_text())
    lines = len(readme.splitlines()) + sum(len("".join(cell["source"]).splitlines()) for cell in notebook["cells"])
    lines += sum(len((REPO / name).read_text().splitlines()) for name in files if name.endswith(".py"))
    assert lines <= 3500, lines
