"""The course workflow end to end: the organizer's split, each client's notebook, the instructor's comparison.

What demo.py runs and benchmarks/end_to_end.py times: the same library calls as
split_data.py and global_aggregation.py, and local_training.ipynb executed by
papermill once per client, as each teammate would run it.
"""

import json
import time
from pathlib import Path

import papermill

from fedmnist import defaults
from fedmnist.comparison import FIGURE_FILE, RESULTS_FILE, ComparisonError, compare, read_comparison, write_outputs
from fedmnist.data import SplitSpec, split
from fedmnist.files import OutputSet
from fedmnist.mnist import MnistError, sha256_bytes
from fedmnist.partition import PartitionError
from fedmnist.updates import UpdateError

# The kernel's own log at ERROR: it would warn, for every client, that its local TCP sockets are unencrypted.
QUIET_KERNEL = ["--IPKernelApp.log_level=ERROR"]


class WorkflowError(RuntimeError):
    """A stage of the workflow failed; the message says which and why."""


NOTEBOOK = defaults.PROJECT_DIR / "local_training.ipynb"


def run_notebook(client_id, seed, data_dir, out_dir, overrides):
    """Execute local_training.ipynb for one client; the executed copy stays in `out_dir`."""
    executed = out_dir / f"local_training_cliente_{client_id}.ipynb"
    parameters = {"CLIENT_ID": client_id, "SEED": seed, "DATA_DIR": str(data_dir), "OUT_DIR": str(out_dir), **overrides}
    try:
        papermill.execute_notebook(
            NOTEBOOK,
            executed,
            parameters=parameters,
            cwd=str(defaults.PROJECT_DIR),
            extra_arguments=QUIET_KERNEL,
        )
    except papermill.PapermillExecutionError as err:
        raise WorkflowError(
            f"local_training.ipynb failed for CLIENT_ID {client_id}: {err.ename}: {err.evalue} (see {executed})"
        ) from None


def run_demo(clients, seed, data_dir, out_dir, notebook_overrides, results_dir=None, replace=False):
    """Run the three stages; return ({stage: seconds}, the comparison's results).

    WorkflowError, with one line naming the stage's problem, if a stage fails.
    """
    data_dir, out_dir = Path(data_dir).resolve(), Path(out_dir).resolve()
    timings = {}
    started = time.perf_counter()
    print(f"==> [1/3] split: MNIST for {clients} clients (seed {seed}) -> {data_dir}", flush=True)
    try:
        split(data_dir, SplitSpec(num_clients=clients, seed=seed), replace=replace)
    except (PartitionError, MnistError, OSError) as err:
        raise WorkflowError(str(err)) from None
    timings["split_data"] = time.perf_counter() - started

    out_dir.mkdir(parents=True, exist_ok=True)
    for client_id in range(1, clients + 1):
        print(f"==> [2/3] local_training.ipynb for CLIENT_ID {client_id} of {clients}", flush=True)
        stage = time.perf_counter()
        run_notebook(client_id, seed, data_dir, out_dir, notebook_overrides)
        timings[f"client_{client_id}"] = time.perf_counter() - stage
        print(f"    client {client_id} done in {timings[f'client_{client_id}']:.0f} s", flush=True)

    print("==> [3/3] global aggregation: every strategy of the registry", flush=True)
    stage = time.perf_counter()
    try:
        comparison = compare(out_dir, data_dir)
        write_outputs(out_dir, comparison)
    except (ComparisonError, PartitionError, UpdateError, OSError) as err:
        raise WorkflowError(str(err)) from None
    timings["global_aggregation"] = time.perf_counter() - stage
    timings["total"] = time.perf_counter() - started
    if results_dir is not None:
        copy_figure_and_table(out_dir, results_dir)
    return timings, comparison.results


def copy_figure_and_table(out_dir, results_dir):
    """The figure and resultados.json into `results_dir`, as one set that records the figure's hash (the models
    stay in the demo's folder)."""
    results = read_comparison(out_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    figure = (out_dir / FIGURE_FILE).read_bytes()
    with OutputSet() as outputs:
        outputs.write_bytes(results_dir / FIGURE_FILE, figure)
        record = {**results, "files": {FIGURE_FILE: sha256_bytes(figure)}}
        outputs.write_text(results_dir / RESULTS_FILE, json.dumps(record, indent=2, allow_nan=False) + "\n")
