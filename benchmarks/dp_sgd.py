"""What DP-SGD's per-example clipping costs: images/s of local training with and without it, side by side.

    python -m benchmarks.dp_sgd

Both arms train the same CNN with SGD on the same real-MNIST images in this
process, one after the other, alternating, so both see the same machine load;
the figure reported is each arm's best run and their ratio. Also printed: the
sample-level ε that a client of 600 images spends per round of E = 1 at B = 10
with σ = 1.1 (fedmnist/privacy.py's dp_sgd_epsilon).
"""

import argparse
import time

from benchmarks.common import update_results
from fedmnist import privacy
from fedmnist.mnist import load_mnist
from fedmnist.partition import stratified_subset
from fedmnist.training import LocalTrainer, seeded_model

CLIP, NOISE = 1.0, 1.1  # C and σ of the DP-SGD arm
DELTA = 1e-5  # δ per example


def images_per_second(trainer, x, y, weights, batch_size, dp_sgd):
    started = time.perf_counter()
    trainer.train(x, y, initial_weights=weights, epochs=1, batch_size=batch_size, seed=0, dp_sgd=dp_sgd, verbose=0)
    return len(x) / (time.perf_counter() - started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 64])
    parser.add_argument("--images", type=int, default=1200, help="images per timed epoch (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per arm (default: %(default)s)")
    args = parser.parse_args(argv)

    x_train, y_train, _, _ = load_mnist()
    chosen = stratified_subset(y_train, args.images, seed=0)
    x, y = x_train[chosen], y_train[chosen]
    trainer = LocalTrainer(seeded_model(0), learning_rate=0.05, optimizer="sgd")
    weights = trainer.model.get_weights()
    rows = []
    print(f"{'batch':>6} {'SGD images/s':>13} {'DP-SGD images/s':>16} {'DP-SGD / SGD':>13}   (best of {args.repeat})")
    for batch_size in args.batch_sizes:
        for dp_sgd in (None, (CLIP, NOISE)):  # warm-up: traces both
            images_per_second(trainer, x[: 4 * batch_size], y[: 4 * batch_size], weights, batch_size, dp_sgd)
        runs = {"sgd": [], "dp_sgd": []}
        for _ in range(args.repeat):
            runs["sgd"].append(images_per_second(trainer, x, y, weights, batch_size, None))
            runs["dp_sgd"].append(images_per_second(trainer, x, y, weights, batch_size, (CLIP, NOISE)))
        best = {arm: max(rates) for arm, rates in runs.items()}
        rows.append(
            {
                "batch_size": batch_size,
                "sgd_images_per_second": round(best["sgd"], 1),
                "dp_sgd_images_per_second": round(best["dp_sgd"], 1),
                "ratio": round(best["dp_sgd"] / best["sgd"], 3),
                "all_runs": {arm: [round(r, 1) for r in rates] for arm, rates in runs.items()},
            }
        )
        print(f"{batch_size:>6} {best['sgd']:>13.0f} {best['dp_sgd']:>16.0f} {best['dp_sgd'] / best['sgd']:>13.3f}")
    epsilon = privacy.dp_sgd_epsilon(NOISE, 10, 600, 1, DELTA)
    print(f"\nsample-level ε of one round (600 images, E = 1, B = 10, σ = {NOISE}, δ = {DELTA:g}): {epsilon:.3f}")
    update_results(
        "dp_sgd",
        {
            "clip": CLIP,
            "noise_multiplier": NOISE,
            "images": args.images,
            "rows": rows,
            "epsilon_one_round": {"examples": 600, "epochs": 1, "batch_size": 10, "delta": DELTA, "epsilon": epsilon},
        },
    )


if __name__ == "__main__":
    main()
