"""Tune a scenario's strategies on the validation set: the grid its [tuning] table declares, on its tuning seeds.

    python experiments/tune.py --scenario deriva-dirichlet-k5
    python experiments/tune.py --scenario deriva-dirichlet-k5      # again: continues where it stopped
    python experiments/tune.py --scenario estudio-dirichlet-k5 --report

Each point (client η × the strategy's own values) runs the strategy alone on each
tuning seed, checkpointed every round; its score is the validation accuracy over
the last 5 rounds. Writes results/ajuste/<scenario>/ajuste.json (every point, and
each strategy's chosen setting) beside the runs. With --report, each strategy then
runs at its chosen setting on the scenario's own seeds (never a tuning seed), with
the centralized baseline at equal epochs, and the seeds are summarised in
results/ajuste/<scenario>/resumen.json and .png: mean ± std, rounds to 97 % and
99 %, and every pair of strategies as a Holm-corrected family. See fedmnist/studies/tuning.py.
"""

import argparse
import sys
from pathlib import Path

from fedmnist.defaults import SCENARIO_DATA_DIR
from fedmnist.errors import FedMnistError
from fedmnist.studies import scenarios
from fedmnist.studies.seed_summary import print_seed_summary
from fedmnist.studies.tuning import TUNING_FILE, report, results_dir, tune


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", required=True, choices=scenarios.names(), help="a scenario with a [tuning] table")
    parser.add_argument("--out", type=Path, help="output folder (default: results/ajuste/<scenario>)")
    parser.add_argument(
        "--report", action="store_true", help="then run each chosen setting on the scenario's seeds, and summarise"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = args.out or results_dir(args.scenario)
    data = SCENARIO_DATA_DIR / f"ajuste-{args.scenario}"
    try:
        scenario = scenarios.load(args.scenario)
        found = tune(scenario, data, out)
    except (ValueError, FedMnistError, OSError) as err:
        sys.exit(f"tune.py: error: {err}")
    print_choices(found)
    print(f"\nWrote {out / TUNING_FILE}")
    if args.report:
        try:
            summary = report(scenario, found, data, out)
        except (ValueError, FedMnistError, OSError) as err:
            sys.exit(f"tune.py: error: {err}")
        print_seed_summary(summary)
        print(f"Wrote the study's summary into {out}")


def print_choices(found):
    for key, result in found["strategies"].items():
        print(f"\n{key}: validation accuracy over the last rounds, mean over seeds {found['seeds']}")
        for point in result["grid"]:
            mark = "  <- chosen" if point["setting"] == result["chosen"] else ""
            setting = ", ".join(f"{name} = {value:g}" for name, value in point["setting"].items())
            print(f"  {setting:<40} {100 * point['validation_score']:6.2f}%{mark}")


if __name__ == "__main__":
    main()
