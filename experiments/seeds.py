"""The course's one round over many seeds: every one-round rule, with and without attackers; mean ± std and tests.

    python experiments/seeds.py                    # resumable: a seed already written is read, not rerun
    python experiments/seeds.py --seeds 101 102 --attack-seeds 101 --mu-grid 0.01 0.1

First FedProx's μ is chosen on the tuning seed's validation set, for the course's
local optimizer (Adam) and for SGD local steps (results/una_ronda/ajuste.json).
Then for each seed s it splits full MNIST for K clients with seed s (a new split,
validation set and initial weights in data/una_ronda/semilla_s), trains every
client once per variant and scores every rule (results/una_ronda/semilla_s/);
the attack seeds also run every attack × M × rule. The summary over seeds,
results/una_ronda/semillas.json and .png, gives mean ± std (percent), every pair
of rules as a Holm-corrected family (better, worse, equivalent within ±0.3 points,
or inconclusive), FedProx's gap under Adam against SGD, and McNemar per seed.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from fedmnist import defaults, strategies
from fedmnist.data import SplitSpec, ensure_split
from fedmnist.errors import FedMnistError
from fedmnist.files import check_writable, write_text_atomically
from fedmnist.studies.robustness import (
    STUDY_FILE,
    StudySettings,
    run_study,
    summarize_seeds,
    tune_fedprox_mu,
    write_study,
    write_summary,
)

TUNING_FILE = "ajuste.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=list(defaults.STUDY_SEEDS), help="the seeds (default: %(default)s)"
    )
    parser.add_argument(
        "--attack-seeds",
        type=int,
        nargs="*",
        help=f"the seeds that also run every attack (default: the first {defaults.ATTACK_SEED_COUNT} seeds)",
    )
    parser.add_argument(
        "--tuning-seed",
        type=int,
        default=defaults.TUNING_SEED,
        help="the seed whose validation set chooses FedProx's μ; never a reported seed (default: %(default)s)",
    )
    parser.add_argument(
        "--mu-grid",
        type=float,
        nargs="+",
        default=list(defaults.MU_GRID),
        help="FedProx's μ values to choose from (default: %(default)s)",
    )
    parser.add_argument(
        "--clients",
        "-K",
        type=int,
        default=defaults.NUM_CLIENTS,
        help="K, the number of clients (default: %(default)s)",
    )
    parser.add_argument(
        "--data", type=Path, default=defaults.DATA_DIR / "una_ronda", help="where each seed's split goes"
    )
    parser.add_argument(
        "--out", type=Path, default=defaults.RESULTS_DIR / "una_ronda", help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--epochs", "-E", type=int, default=defaults.EPOCHS, help="E, local epochs (default: %(default)s)"
    )
    parser.add_argument(
        "--train-samples", type=int, help="use only this many training images per split (quick checks; default: all)"
    )
    parser.add_argument("--force", action="store_true", help="rerun seeds (and the tuning) already written")
    parser.add_argument(
        "--summary-only",
        action="store_true",
        help="summarise the seeds already written (at least two), training nothing: a study still running",
    )
    strategies.add_parameter_options(parser)
    return parser.parse_args(argv)


def checked_seeds(args):
    """(seeds, attack seeds), or exit naming what is wrong with them."""
    seeds = args.seeds
    if len(set(seeds)) < 2 or len(set(seeds)) != len(seeds):
        sys.exit(f"seeds.py: error: --seeds {' '.join(map(str, seeds))}: give at least two different seeds, each once")
    attack_seeds = seeds[: defaults.ATTACK_SEED_COUNT] if args.attack_seeds is None else args.attack_seeds
    if stray := sorted(set(attack_seeds) - set(seeds)):
        sys.exit(f"seeds.py: error: --attack-seeds {stray} are not among --seeds; every attack seed is a study seed")
    if args.tuning_seed in seeds:
        sys.exit(f"seeds.py: error: --tuning-seed {args.tuning_seed} is also a reported seed; choose another")
    if not all(mu > 0 for mu in args.mu_grid):
        sys.exit("seeds.py: error: --mu-grid: every μ must be positive (μ = 0 is FedAvg's row already)")
    return seeds, set(attack_seeds)


def split_for(args, seed):
    spec = SplitSpec(num_clients=args.clients, seed=seed, train_samples=args.train_samples)
    data = args.data / f"semilla_{seed}"
    ensure_split(data, spec, replace=True)  # one folder per seed, the study's own
    return data


def read_if_same(path, wanted):
    """The JSON at `path` if it exists and its `config` holds every item of `wanted`; else None."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    config = found.get("config") if isinstance(found, dict) else None
    if not isinstance(config, dict) or any(config.get(k) != v for k, v in wanted.items()):
        return None
    return found


def chosen_mu(args, settings):
    """FedProx's μ per local optimizer, from the tuning seed (read back if already chosen on the same grid)."""
    path = args.out / TUNING_FILE
    wanted = {
        "seed": args.tuning_seed,
        "mu_grid": sorted(args.mu_grid),
        "epochs": args.epochs,
        "train_samples_option": args.train_samples,
    }
    if not args.force and (found := read_if_same(path, wanted)):
        print(f"==> FedProx's μ already chosen on seed {args.tuning_seed}: {found['chosen']} ({path})")
        return found["chosen"]
    print(f"\n==> tuning seed {args.tuning_seed}: FedProx's μ in {sorted(args.mu_grid)}, on validation")
    started = time.perf_counter()
    data = split_for(args, args.tuning_seed)
    found = tune_fedprox_mu(data, StudySettings(epochs=args.epochs, seed=args.tuning_seed), sorted(args.mu_grid))
    found["config"] = {**wanted, "seconds": round(time.perf_counter() - started, 1)}
    write_text_atomically(path, json.dumps(found, indent=2) + "\n")
    for point in found["grid"]:
        print(f"  {point['optimizer']:<5} μ = {point['mu']:<6g} validation {100 * point['validation_accuracy']:.2f}%")
    return found["chosen"]


def main(argv=None):
    args = parse_args(argv)
    seeds, attack_seeds = checked_seeds(args)
    try:
        values = strategies.parameters_from_options(args)
        check_writable(args.out)
        args.out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as err:
        sys.exit(f"seeds.py: error: {err}")
    runs, done = [], []
    try:
        mu = chosen_mu(args, StudySettings(epochs=args.epochs))
        values = {**(values or {}), "fedprox": {"mu": mu[defaults.OPTIMIZER]}}
        for seed in seeds:
            settings = StudySettings(epochs=args.epochs, seed=seed, values=values, attacks=seed in attack_seeds)
            out = args.out / f"semilla_{seed}"
            wanted = {"seed": seed, "epochs": args.epochs, "train_samples_option": args.train_samples}
            found = None if args.force else read_if_same(out / STUDY_FILE, wanted)
            if found and same_settings(found, settings):
                print(f"==> seed {seed}: already written ({out / STUDY_FILE})")
                runs.append(found)
                done.append(seed)
                continue
            if args.summary_only:
                print(f"==> seed {seed}: not written yet")
                continue
            data = split_for(args, seed)
            print(f"\n==> seed {seed}: {'with' if settings.attacks else 'without'} attacks, into {out}")
            run = run_study(data, settings)
            run["config"]["train_samples_option"] = args.train_samples
            write_study(out, run)
            runs.append(run)
            done.append(seed)
    except (FedMnistError, OSError) as err:
        sys.exit(f"seeds.py: error: {err}")
    if len(done) < 2:
        sys.exit(f"seeds.py: error: {len(done)} seed(s) written so far; a summary needs at least two")
    compute = sum(run["config"]["total_seconds"] for run in runs) + tuning_seconds(args)
    summary = summarize_seeds(runs, done, compute)
    summary["config"]["mu_chosen_on_validation"] = mu
    summary["config"]["seconds_meaning"] = "the compute of every seed's study and of the μ tuning, added"
    written = write_summary(args.out, summary)
    print(f"\n{'one round, no attack':<40} test accuracy, mean ± std over {len(done)} seeds")
    for key, row in summary["one_shot"].items():
        print(f"{key:<40} {row['mean']:6.2f} ± {row['std']:.2f}")
    print(
        f"Wrote {' and '.join(map(str, written))}: {len(done)} seeds, {summary['config']['seconds']:.0f} s of compute"
    )


def tuning_seconds(args):
    try:
        return json.loads((args.out / TUNING_FILE).read_text())["config"]["seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def same_settings(found, settings):
    """Whether a seed's written study ran with these settings (μ values, attacks or not, the SGD contrast)."""
    config = found["config"]
    contrast = config.get("contrast") or {}
    return (
        config.get("parameters", {}).get("fedprox") == settings.chosen(strategies.get("fedprox"))
        and ("attacks" in found) == settings.attacks
        and contrast.get("mu") == settings.contrast_mu
    )


if __name__ == "__main__":
    main()
