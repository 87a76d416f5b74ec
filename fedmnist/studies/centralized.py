"""The centralized baseline: what the same training reaches without federation, the cost of federating measured.

The same CNN from the same initial weights, the same local optimizer, learning
rate and batch size, trained on the pooled data of all K clients for as many
epochs over that data as the federation's clients run in total: R·C·E (each
round, a fraction C of the data is trained E times). The test set is evaluated
after every epoch; epoch e stands beside round e / (C·E) of the federation.
This module owns centralizado.json, written beside a run's simulacion.json.
"""

import json
import time

import numpy as np

from fedmnist.files import write_text_atomically
from fedmnist.training import LocalTrainer
from model import build_model

BASELINE_FILE = "centralizado.json"


def baseline_epochs(settings):
    """R·C·E, the federation's total epochs over the whole data, rounded down (at least 1)."""
    return max(1, int(settings.rounds * settings.fraction * settings.epochs + 1e-9))


def baseline_config(settings, num_clients):
    return {
        "num_clients": num_clients,
        "epochs": baseline_epochs(settings),
        "epochs_per_round": settings.fraction * settings.epochs,
        "batch_size": settings.batch_size,
        "optimizer": settings.optimizer,
        "learning_rate": settings.learning_rate,
        "seed": settings.seed,
    }


def train_centralized(federation, settings, log=print):
    """Train on the pooled client data; returns what centralizado.json holds."""
    started = time.perf_counter()
    ids = sorted(federation.clients)
    x = np.concatenate([federation.clients[c][0] for c in ids])
    y = np.concatenate([federation.clients[c][1] for c in ids])
    config = baseline_config(settings, len(ids))
    log(f"centralized baseline: {len(y)} images, {config['epochs']} epochs, B = {settings.batch_size}")
    trainer = LocalTrainer(build_model(), settings.learning_rate, settings.optimizer)
    history = trainer.train(
        x,
        y,
        initial_weights=federation.initial_weights,
        epochs=config["epochs"],
        batch_size=settings.batch_size,
        seed=settings.seed,
        validation_data=federation.test_set,
        verbose=0,
    ).history
    rows = [
        {"epoch": epoch, "equivalent_round": epoch / config["epochs_per_round"], "accuracy": accuracy, "loss": loss}
        for epoch, (accuracy, loss) in enumerate(zip(history["val_accuracy"], history["val_loss"]), start=1)
    ]
    return {"config": config, "epochs": rows, "seconds": round(time.perf_counter() - started, 1)}


def read_baseline(out_dir, settings, num_clients):
    """The baseline in out_dir if it was trained with these settings, else None."""
    path = out_dir / BASELINE_FILE
    try:
        baseline = json.loads(path.read_text())
        return baseline if baseline["config"] == baseline_config(settings, num_clients) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_baseline(out_dir, baseline):
    write_text_atomically(out_dir / BASELINE_FILE, json.dumps(baseline, indent=2) + "\n")
