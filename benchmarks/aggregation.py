"""Aggregation at scale: every rule at K = 10, 100 and 1,000 clients with this model's shapes.

    python -m benchmarks.aggregation

Reports seconds and peak extra memory (traced NumPy allocations, in units of
one float32 model), runs Flower's own aggregation functions on the same inputs
in the same run when flwr is installed, and compares with the memory-bandwidth
bound of reading K models once.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import measure, update_results
from fedmnist import aggregation
from fedmnist.updates import Expected, iter_valid_updates, update_filename, write_update
from model import weight_shapes

TRIM_BETA = 0.1


def random_updates(shapes, k, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(shape, dtype=np.float32) for shape in shapes] for _ in range(k)]


def memory_bandwidth_gb_s(size_bytes=1 << 30, repeat=3):
    """Read bandwidth from summing a 1 GiB float32 array, in GB/s."""
    data = np.ones(size_bytes // 4, dtype=np.float32)
    data.sum()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - started)
    return size_bytes / best / 1e9


def project_rules(k):
    f = max(1, k // 10)
    return {
        "fedavg": lambda ups, counts: aggregation.fedavg(zip(ups, counts)),
        "fedmed": lambda ups, counts: aggregation.fedmed(list(zip(ups, counts))),
        "trimmed_mean": lambda ups, counts: aggregation.trimmed_mean(list(zip(ups, counts)), TRIM_BETA),
        "krum": lambda ups, counts: aggregation.krum(list(zip(ups, counts)), f),
    }


def flower_rules(k):
    try:
        from flwr.server.strategy import aggregate as flower
    except ImportError:
        return None
    f = max(1, k // 10)
    return {
        "fedavg": lambda ups, counts: flower.aggregate(list(zip(ups, counts))),
        "fedmed": lambda ups, counts: flower.aggregate_median(list(zip(ups, counts))),
        "trimmed_mean": lambda ups, counts: flower.aggregate_trimmed_avg(list(zip(ups, counts)), TRIM_BETA),
        "krum": lambda ups, counts: flower.aggregate_krum(list(zip(ups, counts)), f, 0),
    }


def same_result(ours, theirs):
    bitwise = all(np.array_equal(a, np.asarray(b, dtype=np.float32)) for a, b in zip(ours, theirs))
    max_diff = max(float(np.max(np.abs(a - np.asarray(b, dtype=np.float64)))) for a, b in zip(ours, theirs))
    return bitwise, max_diff


def fedavg_from_disk(shapes, k, seed=0):
    """FedAvg over K update pickles read lazily through the restricted loader: (seconds, peak traced bytes)."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for client_id in range(1, k + 1):
            path = Path(folder) / update_filename(client_id)
            write_update(
                path,
                client_id=client_id,
                num_samples=client_id,
                weights=[rng.standard_normal(s, dtype=np.float32) for s in shapes],
                mu=0.0,
                epochs=1,
                batch_size=32,
                seed=0,
                initial_weights_sha256="0" * 64,
            )
            paths.append(path)
        rejected = []
        expected = Expected(tuple(shapes), {client_id: client_id for client_id in range(1, k + 1)}, "0" * 64)
        stream = ((u.weights, u.num_samples) for u in iter_valid_updates(paths, expected, rejected))
        _, seconds, peak = measure(aggregation.fedavg, stream)
        assert not rejected, rejected
    return seconds, peak


def format_flower(row):
    if "flower_seconds" not in row:
        return f"  {row['flower']}"
    agreement = "bitwise" if row["bitwise_equal"] else f"max Δ {row['max_abs_difference']:.1e}"
    return (
        f"{row['flower_seconds']:>9.3f} {row['flower_peak_extra_models']:>10.2f}m "
        f"{row['speedup']:>8.1f}x {agreement:>14}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 1000], help="the values of K")
    parser.add_argument(
        "--flower-krum-max-k",
        type=int,
        default=100,
        help="largest K for Flower's Krum, whose K² Python loop of norms takes hours at K = 1000 (default: 100)",
    )
    args = parser.parse_args(argv)
    shapes = weight_shapes()
    model_bytes = sum(int(np.prod(s)) for s in shapes) * 4
    bandwidth = memory_bandwidth_gb_s()
    flower_available = flower_rules(1) is not None
    flower_note = (
        "Flower found"
        if flower_available
        else "Flower not installed: its columns are skipped (make venv installs it, or pip install -e '.[flower]')"
    )
    print(f"model: {model_bytes / 1e6:.2f} MB float32; read bandwidth {bandwidth:.1f} GB/s; {flower_note}")
    print(
        f"\n{'K':>5} {'rule':<13} {'ours s':>8} {'extra mem':>10} {'bound s':>8} {'Flower s':>9} "
        f"{'Flower mem':>11} {'speed-up':>9} {'same result':>14}"
    )
    rows = []
    for k in args.clients:
        updates = random_updates(shapes, k)
        counts = list(range(1, k + 1))
        bound = k * model_bytes / (bandwidth * 1e9)
        theirs_by_rule = flower_rules(k) or {}
        for rule, ours in project_rules(k).items():
            ours_result, ours_s, ours_peak = measure(ours, updates, counts)
            row = {
                "clients": k,
                "rule": rule,
                "seconds": round(ours_s, 4),
                "peak_extra_models": round(ours_peak / model_bytes, 2),
                "bandwidth_bound_seconds": round(bound, 4),
            }
            theirs = theirs_by_rule.get(rule)
            if theirs is None:
                row["flower"] = "flwr not installed" if not flower_available else "no Flower equivalent"
            elif rule == "krum" and k > args.flower_krum_max_k:
                row["flower"] = f"skipped above K={args.flower_krum_max_k}: a Python double loop over K² pairs"
            else:
                theirs_result, theirs_s, theirs_peak = measure(theirs, updates, counts)
                bitwise, max_diff = same_result(ours_result, theirs_result)
                row.update(
                    flower_seconds=round(theirs_s, 4),
                    flower_peak_extra_models=round(theirs_peak / model_bytes, 2),
                    speedup=round(theirs_s / ours_s, 2),
                    bitwise_equal=bitwise,
                    max_abs_difference=max_diff,
                )
            rows.append(row)
            flower_part = format_flower(row)
            print(
                f"{k:>5} {rule:<13} {ours_s:>8.3f} {row['peak_extra_models']:>9.2f}m {bound:>8.3f} {flower_part}",
                flush=True,
            )
        del updates
    k = max(args.clients)
    disk_seconds, disk_peak = fedavg_from_disk(shapes, k)
    print(
        f"\nFedAvg streaming {k} pickles from disk through the restricted loader: {disk_seconds:.2f} s, "
        f"peak extra memory {disk_peak / model_bytes:.2f} models"
    )
    update_results(
        "aggregation",
        {
            "model_bytes": model_bytes,
            "read_bandwidth_gb_s": round(bandwidth, 1),
            "trim_beta": TRIM_BETA,
            "krum_f": "max(1, K // 10)",
            "rows": rows,
            "fedavg_from_disk": {
                "clients": k,
                "seconds": round(disk_seconds, 3),
                "peak_extra_models": round(disk_peak / model_bytes, 2),
            },
        },
    )


if __name__ == "__main__":
    main()
