"""Shared helpers for the benchmarks: timing, peak memory, and results/benchmarks.json."""

import json
import os
import platform
import time
import tracemalloc

import numpy as np

from fedmnist.defaults import RESULTS_DIR
from fedmnist.files import write_text_atomically

RESULTS_FILE = RESULTS_DIR / "benchmarks.json"


def machine_description():
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def measure(function, *args, repeat=1):
    """Return (result, best seconds over `repeat` runs, peak traced bytes of the last run)."""
    best = float("inf")
    for _ in range(repeat):
        tracemalloc.start()
        started = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - started)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, best, peak


def read_results():
    return json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else {}


def update_results(section, payload):
    """Merge one benchmark's section into results/benchmarks.json (atomically)."""
    results = read_results()
    results[section] = payload
    results["machine"] = machine_description()
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(RESULTS_FILE, json.dumps(results, indent=2) + "\n")
