"""Wall time of each stage of `make demo` (split, one notebook per client, aggregation).

    python -m benchmarks.end_to_end

Runs the course workflow (demo.py's) into a temporary folder, so outputs/ and results/ are left alone.
"""

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import update_results
from fedmnist import defaults
from fedmnist.data import SplitSpec
from fedmnist.workflow import run_demo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=defaults.NUM_CLIENTS)
    parser.add_argument("--seed", type=int, default=defaults.SEED)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as folder:
        timings, _ = run_demo(
            SplitSpec(num_clients=args.clients, seed=args.seed), Path(folder) / "data", Path(folder) / "outputs", {}
        )
    print("\nstage                 seconds")
    for stage, seconds in timings.items():
        print(f"{stage:<20} {seconds:>8.1f}")
    update_results(
        "end_to_end",
        {
            "clients": args.clients,
            "seed": args.seed,
            "seconds": {stage: round(seconds, 1) for stage, seconds in timings.items()},
        },
    )


if __name__ == "__main__":
    main()
