"""Shared helpers for the benchmarks: timing, peak memory, and results/benchmarks.json."""

import json
import platform
import time
import tracemalloc
from pathlib import Path

from atomic import write_text_atomically

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS_FILE = PROJECT_DIR / "results" / "benchmarks.json"


def machine_description():
    import os

    import numpy as np

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__}


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


def update_results(section, payload):
    """Merge one benchmark's section into results/benchmarks.json (atomically)."""
    results = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.is_file() else {}
    results[section] = payload
    results["machine"] = machine_description()
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(RESULTS_FILE, json.dumps(results, indent=2) + "\n")
