"""Rounds per hour of the three trainers, interleaved: sequential, the worker pool, and the batched trainer.

    python -m benchmarks.rounds
    python -m benchmarks.rounds --scenarios fedavg-iid --repetitions 3 --rounds 2

Settings: McMahan et al.'s IID setting (the fedavg-iid scenario: K = 100, C = 0.1,
E = 5, B = 10, FedAvg), the K = 100 Dirichlet(0.1) split of deriva-dirichlet-k100
(clients of very unequal size) and the course's rounds (curso-iid: K = 5, C = 1,
E = 1, B = 64), seed 42. Each repetition plays every arm once, in
turn (the machine is shared and noisy: arms run interleaved, never one block after
another), each arm a fresh run of 1 + --rounds rounds from the same initial weights:
the first round (which starts processes and traces) is reported apart, rounds per
hour come from the later rounds. Every repetition is recorded. The same run measures
the machine's GEMM ceiling (float32 matrix products, TensorFlow, all cores) and the
share of a round spent training, evaluating and starting up, and the training rate
against that ceiling (TRAIN_FLOP_PER_IMAGE: forward and backward of the CNN).
Writes results/benchmarks.json under "rounds", one entry per scenario (a run of some
scenarios keeps the others' entries).
"""

import argparse
import statistics
import time

import tensorflow as tf

from benchmarks.common import read_results, update_results
from fedmnist import strategies
from fedmnist.data import ensure_split
from fedmnist.defaults import SCENARIO_DATA_DIR, SEED
from fedmnist.evaluation import evaluate_weights
from fedmnist.simulation import Federation, RoundSettings, run_rounds
from fedmnist.studies import scenarios
from model import build_model

SCENARIOS = ("fedavg-iid", "deriva-dirichlet-k100", "curso-iid")
ARMS = {  # name: the RoundSettings fields that make it
    "sequential": {"trainer": "per-client", "workers": 0},
    "pool": {"trainer": "per-client", "workers": 2},
    "batched": {"trainer": "batched", "workers": 0},
}
TRAIN_FLOP_PER_IMAGE = 3 * 15.5e6  # backward ≈ 2 × forward; the forward pass is 15.5 MFLOP (2 × MACs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per arm, after the first (default: 2)")
    parser.add_argument("--repetitions", type=int, default=3, help="repetitions of every arm (default: 3)")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    return parser.parse_args(argv)


def gemm_gflops(size=2048, repeat=10):
    """Float32 matrix-product GFLOP/s of TensorFlow on this machine (best of `repeat`)."""
    a = tf.random.uniform([size, size])
    tf.matmul(a, a).numpy()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        tf.matmul(a, a).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def evaluation_seconds(federation, repeat=3):
    model = build_model()
    evaluate_weights(model, federation.initial_weights, *federation.test_set)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        evaluate_weights(model, federation.initial_weights, *federation.test_set)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def one_arm(federation, settings):
    """(seconds of each round, images trained in each round) of one fresh run."""
    results, _ = run_rounds(federation, [strategies.parse_spec("fedavg")], settings, log=lambda line: None)
    rows = results["history"]["fedavg"]
    images = [sum(len(federation.clients[c][1]) for c in row["clients"]) * settings.epochs for row in rows]
    return [row["seconds"] for row in rows], images


def bench_scenario(name, args, ceiling):
    scenario = scenarios.load(name)
    data = SCENARIO_DATA_DIR / name / f"semilla_{SEED}" if scenario.seeds else SCENARIO_DATA_DIR / name
    manifest = ensure_split(data, scenario.split_spec(SEED), replace=True)
    federation = Federation.load(data, manifest)
    run = {k: v for k, v in scenario.run.items() if k in ("fraction", "epochs", "batch_size", "optimizer")}
    evaluation = evaluation_seconds(federation)
    arms = {arm: {"repetitions": []} for arm in args.arms}
    for repetition in range(1, args.repetitions + 1):
        for arm in args.arms:
            settings = RoundSettings(rounds=args.rounds + 1, seed=SEED, **run, **ARMS[arm])
            seconds, images = one_arm(federation, settings)
            later = statistics.median(seconds[1:])
            training = max(later - evaluation, 1e-9)
            record = {
                "first_round_seconds": round(seconds[0], 2),
                "round_seconds": [round(s, 2) for s in seconds[1:]],
                "rounds_per_hour": round(3600 / later, 1),
                "startup_seconds": round(seconds[0] - later, 2),
                "training_share": round(training / later, 3),
                "evaluation_share": round(evaluation / later, 3),
                "training_share_of_ceiling": round(
                    statistics.median(images[1:]) * TRAIN_FLOP_PER_IMAGE / training / 1e9 / ceiling, 3
                ),
            }
            arms[arm]["repetitions"].append(record)
            print(
                f"{name} rep {repetition} {arm:<10}: first round {seconds[0]:.1f} s, later "
                f"{', '.join(f'{s:.1f}' for s in seconds[1:])} s -> {record['rounds_per_hour']:.0f} rounds/h, "
                f"training at {100 * record['training_share_of_ceiling']:.0f}% of the GEMM ceiling",
                flush=True,
            )
    for arm, result in arms.items():
        result["median_rounds_per_hour"] = statistics.median(r["rounds_per_hour"] for r in result["repetitions"])
    base = arms[args.arms[0]]["median_rounds_per_hour"]
    for result in arms.values():
        result["speedup_over_" + args.arms[0]] = round(result["median_rounds_per_hour"] / base, 2)
    if "pool" in arms and "batched" in arms:
        ratios = [
            b["rounds_per_hour"] / p["rounds_per_hour"]
            for b, p in zip(arms["batched"]["repetitions"], arms["pool"]["repetitions"])
        ]
        arms["batched"]["speedup_over_pool_per_repetition"] = [round(r, 2) for r in ratios]
        print(f"{name}: batched / pool per repetition: {', '.join(f'{r:.2f}x' for r in ratios)}")
    return {
        "setting": f"{name}: K = {manifest['num_clients']}, {run}, FedAvg, seed {SEED}",
        "gemm_gflops": round(ceiling, 1),
        "evaluation_seconds": round(evaluation, 2),
        "arms": arms,
    }


def main(argv=None):
    args = parse_args(argv)
    ceiling = gemm_gflops()
    print(f"GEMM ceiling: {ceiling:.0f} GFLOP/s (float32, TensorFlow, all cores)", flush=True)
    results = {name: bench_scenario(name, args, ceiling) for name in args.scenarios}
    update_results("rounds", {"scenarios": {**earlier_scenarios(), **results}})


def earlier_scenarios():
    """The scenarios an earlier run measured, each with the GEMM ceiling of its own run."""
    earlier = read_results().get("rounds", {})
    return {
        name: {"gemm_gflops": earlier.get("gemm_gflops"), **entry}
        for name, entry in earlier.get("scenarios", {}).items()
    }


if __name__ == "__main__":
    main()
