"""What a hostile update costs the aggregator: time and peak memory of loading each crafted file, next to an honest one.

    python -m benchmarks.hostile_updates

Every crafted file of benchmarks/crafted_updates.py, plus the largest ones the
model's size cap admits, goes through updates.decode_update with the model's shapes.
Peak memory is what tracemalloc sees (Python objects and NumPy arrays), taken
beside the size of the file and of an honest update. Results go to
results/benchmarks.json under "hostile_updates".
"""

import pickle

import numpy as np

from benchmarks.common import measure, update_results
from benchmarks.crafted_updates import crafted_files, empty_set_flood, honest, memo_amplified_arrays
from fedmnist.updates import Expected, UpdateError, decode_update
from model import weight_shapes

NUM_SAMPLES = 12_000


def load_outcome(data, expected):
    try:
        decode_update(data, "pesos_cliente_1.pkl", expected, 1)
        return "accepted"
    except UpdateError as err:
        return "rejected: " + str(err).split(": ", 1)[1]


def main():
    shapes = weight_shapes()
    expected = Expected(tuple(shapes), {1: NUM_SAMPLES}, "a" * 64)
    files = {
        f"honest update, protocol {p}": pickle.dumps(honest(1, shapes, NUM_SAMPLES), protocol=p) for p in (0, 4, 5)
    }
    float64 = honest(1, shapes, NUM_SAMPLES) | {"weights": [np.full(s, 0.5) for s in shapes]}
    files["honest update, float64, protocol 0"] = pickle.dumps(float64, protocol=0)
    honest_count = len(files)
    files.update(crafted_files(shapes, NUM_SAMPLES))
    cap = expected.max_file_bytes
    files["EMPTY_SET up to the cap"] = empty_set_flood(cap - 4)
    files["one buffer of the cap's size rebuilt into 1,000 arrays"] = memo_amplified_arrays(cap - (64 << 10), 1000)
    honest_bytes = len(files["honest update, protocol 4"])
    print(
        f"model: {expected.num_parameters} parameters; file cap {cap / 1e6:.1f} MB, "
        f"array budget {expected.max_array_bytes / 1e6:.1f} MB"
    )

    rows = []
    print(f"{'file':<58} {'size':>10} {'seconds':>8} {'peak MB':>8} {'peak/honest':>11}  outcome")
    for name, data in files.items():
        outcome, seconds, peak = measure(load_outcome, data, expected, repeat=3)
        rows.append(
            {
                "file": name,
                "bytes": len(data),
                "seconds": round(seconds, 4),
                "peak_bytes": peak,
                "peak_over_honest_update": round(peak / honest_bytes, 2),
                "outcome": outcome,
            }
        )
        print(
            f"{name[:58]:<58} {len(data):>10} {seconds:>8.3f} {peak / 1e6:>8.1f} "
            f"{peak / honest_bytes:>11.2f}  {outcome[:60]}"
        )
    worst = max(rows[honest_count:], key=lambda row: row["peak_bytes"])
    slowest = max(rows[honest_count:], key=lambda row: row["seconds"])
    print(
        f"\nWorst crafted file for memory: {worst['file']} ({worst['peak_bytes'] / 1e6:.1f} MB, "
        f"{worst['peak_over_honest_update']:.2f}x an honest update of {honest_bytes / 1e6:.2f} MB)"
    )
    print(f"Slowest crafted file: {slowest['file']} ({slowest['seconds']:.3f} s)")
    assert all(row["outcome"] == "accepted" for row in rows[:honest_count]), "an honest update was rejected"
    update_results(
        "hostile_updates",
        {
            "honest_update_bytes": honest_bytes,
            "file_cap_bytes": cap,
            "array_budget_bytes": expected.max_array_bytes,
            "files": rows,
        },
    )


if __name__ == "__main__":
    main()
