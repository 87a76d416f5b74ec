"""The course workflow end to end: the organizer's split, each client's notebook, the instructor's comparison.

What demo.py runs and benchmarks/end_to_end.py times: the same library calls as
split_data.py and global_aggregation.py, and local_training.ipynb executed by
papermill once per client, as each teammate would run it; with several rounds,
the notebooks and the comparison again from each round's published weights.
"""

import json
import time
from pathlib import Path

import papermill
from jupyter_client.kernelspec import KernelSpecManager

from fedmnist import defaults
from fedmnist.comparison import (
    FIGURE_FILE,
    RESULTS_FILE,
    ROUNDS_FIGURE_FILE,
    compare,
    plan_next_round,
    publish,
    read_comparison,
    write_outputs,
)
from fedmnist.data import split
from fedmnist.errors import FedMnistError
from fedmnist.files import OutputSet
from fedmnist.mnist import sha256_bytes
from fedmnist.rounds import start_over

# The kernel's own log at ERROR: it would warn, for every client, that its local TCP sockets are unencrypted.
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


class WorkflowError(FedMnistError, RuntimeError):
    """A stage of the workflow failed; the message says which and why."""


NOTEBOOK = defaults.PROJECT_DIR / "local_training.ipynb"
KERNEL = "fedmnist"  # the notebook's kernel, which make venv registers


def notebook_kernel():
    """The project's kernel where it is registered; else the environment's own Python ("python3"), which is the
    same interpreter when papermill runs from the project's environment."""
    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def run_notebook(client_id, seed, data_dir, out_dir, overrides, round_number=1):
    """Execute local_training.ipynb for one client in one round; the executed copy stays in `out_dir`."""
    executed = out_dir / f"local_training_cliente_{client_id}.ipynb"
    parameters = {
        "CLIENT_ID": client_id,
        "ROUND": round_number,
        "SEED": seed,
        "DATA_DIR": str(data_dir),
        "OUT_DIR": str(out_dir),
        **overrides,
    }
    try:
        papermill.execute_notebook(
            NOTEBOOK,
            executed,
            parameters=parameters,
            cwd=str(defaults.PROJECT_DIR),
            kernel_name=notebook_kernel(),
            extra_arguments=QUIET_KERNEL,
        )
    except papermill.PapermillExecutionError as err:
        raise WorkflowError(
            f"local_training.ipynb failed for CLIENT_ID {client_id}: {err.ename}: {err.evalue} (see {executed})"
        ) from None


def run_demo(spec, data_dir, out_dir, notebook_overrides, results_dir=None, replace=False, rounds=1):
    """Split by `spec` (a SplitSpec), then `rounds` rounds of the clients' notebooks and the comparison, each
    round from the FedAvg model the previous one published; return ({stage: seconds}, the last comparison's results).

    With one round everything lands in `out_dir`; with several, round r's in `out_dir`/ronda_r.
    WorkflowError, with one line naming the stage's problem, if a stage fails.
    """
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    timings = {}
    started = time.perf_counter()
    print(f"==> split: MNIST, {spec.describe()} -> {data_dir}", flush=True)
    try:
        split(data_dir, spec, replace=replace)
        cleared = start_over(data_dir, keep_others_of=None if replace else DEMO)
    except (FedMnistError, OSError) as err:
        raise WorkflowError(str(err)) from None
    if cleared:
        print(f"    {data_dir}: removed the {cleared} round(s) an earlier demo published; starting at round 1")
    timings["split_data"] = time.perf_counter() - started
    for round_number in range(1, rounds + 1):
        folder = out_dir if rounds == 1 else out_dir / f"ronda_{round_number}"
        results = run_round(spec, data_dir, folder, notebook_overrides, (round_number, rounds), timings)
    timings["total"] = time.perf_counter() - started
    if results_dir is not None:
        copy_figure_and_table(folder, results_dir)
    return timings, results


DEMO = "demo.py"


def run_round(spec, data_dir, folder, overrides, progress, timings):
    """One round: every client's notebook, then the comparison, which publishes FedAvg's model for the next."""
    round_number, rounds = progress
    folder.mkdir(parents=True, exist_ok=True)
    for client_id in range(1, spec.num_clients + 1):
        print(
            f"==> round {round_number}/{rounds}: local_training.ipynb for CLIENT_ID {client_id} of {spec.num_clients}",
            flush=True,
        )
        stage = time.perf_counter()
        run_notebook(client_id, spec.seed, data_dir, folder, overrides, round_number)
        timings[f"round_{round_number}_client_{client_id}"] = time.perf_counter() - stage
    print(f"==> round {round_number}/{rounds}: global aggregation, every one-round rule", flush=True)
    stage = time.perf_counter()
    try:
        comparison = compare(folder, data_dir, round_number=round_number)
        publishing = plan_next_round(comparison, data_dir, "fedavg") if round_number < rounds else None
        write_outputs(folder, comparison)
        if publishing:
            publish(comparison, data_dir, publishing, by=DEMO)
    except (FedMnistError, OSError) as err:
        raise WorkflowError(str(err)) from None
    timings[f"round_{round_number}_aggregation"] = time.perf_counter() - stage
    return comparison.results


def copy_figure_and_table(out_dir, results_dir):
    """The figures and resultados.json into `results_dir`, as one set that records the figures' hashes (the models
    stay in the demo's folder); a rounds figure of an earlier demo goes when this one followed one round."""
    results = read_comparison(out_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        name: (out_dir / name).read_bytes() for name in (FIGURE_FILE, ROUNDS_FIGURE_FILE) if name in results["files"]
    }
    stale = [results_dir / ROUNDS_FIGURE_FILE] if ROUNDS_FIGURE_FILE not in figures else []
    with OutputSet(remove=stale) as outputs:
        for name, figure in figures.items():
            outputs.write_bytes(results_dir / name, figure)
        record = {**results, "files": {name: sha256_bytes(figure) for name, figure in figures.items()}}
        outputs.write_text(results_dir / RESULTS_FILE, json.dumps(record, indent=2, allow_nan=False) + "\n")
