"""The factors study: α, K, FedProx's μ and E at fixed R·E, each against its reference, over the same seeds.

Run the scenarios first (make factors does both):

    python experiments/simulation.py --scenario factores-alfa-1 --resume    # and the other factores-*
    python experiments/factors.py

It reads deriva-dirichlet-k5's and the factores-* scenarios' resumen.json and writes
results/factores.json and results/factores.png with every factor whose runs have all finished; the others
are listed as pending. See fedmnist/studies/factors.py for the design.
"""

import argparse
import sys

from fedmnist.errors import FedMnistError
from fedmnist.studies.factors import all_scenarios, read_summaries, summarize, write_summary


def main(argv=None):
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    try:
        summary = summarize(read_summaries(all_scenarios()))
        written = write_summary(summary)
    except (FedMnistError, OSError) as err:
        sys.exit(f"factors.py: error: {err}")
    for factor in summary["factors"].values():
        print(f"\n{factor['label']}: final accuracy (%) over seeds {summary['seeds']}")
        print("  each against the point it names, paired: mean [95 % interval] in points")
        for row in factor["rows"]:
            final, difference = row["final_accuracy"], row["difference"]
            low, high = difference["ci95"]
            print(
                f"  {row['level']:>7g}  {row['label']:<48} {final['mean']:6.2f} ± {final['std']:.2f}   "
                f"{difference['mean']:+6.2f} [{low:+.2f}, {high:+.2f}]  against {row['against']}"
            )
    for pending in summary["pending"].values():
        missing = ", ".join(pending["missing"])
        print(f"\n{pending['label']}: pending, no results yet for {missing}; run: make factors")
    print(f"\nWrote {' and '.join(map(str, written))}")


if __name__ == "__main__":
    main()
