"""Multi-round federated learning on one machine: R rounds of sample → local training → aggregation.

Each round samples a fraction C of the K clients (the same clients for every
strategy), trains each with the project's LocalTrainer from that strategy's
current global weights, aggregates with the strategy's registered rule, and
evaluates the new global model on the common test set. The rows are
fedmnist/history.py's; experiments/simulation.py is the command line.
"""

import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from fedmnist.attacks import MODEL_POISONING, attack_updates, flip_labels
from fedmnist.data import load_client_data, load_initial_weights, load_test_data
from fedmnist.defaults import BATCH_SIZE, FRACTION, LEARNING_RATE, ROUND_EPOCHS, ROUNDS, SEED
from fedmnist.drift import round_drift
from fedmnist.evaluation import evaluate_weights
from fedmnist.history import new_history, round_row
from fedmnist.training import LocalTrainer, client_seed
from fedmnist.updates import ClientUpdate, UpdateError, validate_weights
from model import build_model


@dataclass(frozen=True)
class RoundSettings:
    """How every round runs (the papers' symbols: R, C, E, B)."""

    rounds: int = ROUNDS
    fraction: float = FRACTION
    epochs: int = ROUND_EPOCHS
    batch_size: int = BATCH_SIZE
    learning_rate: float = LEARNING_RATE
    seed: int = SEED  # of client sampling, local training and the noise attack
    attack: str | None = None
    malicious: int = 0  # M, the attackers: client ids 1..M

    def problems(self):
        """The first setting that cannot run, as a message naming its option, or None."""
        for option, value in (("--rounds", self.rounds), ("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if value < 1:
                return f"{option} {value}: must be at least 1"
        if not 0 < self.fraction <= 1:
            return f"--fraction {self.fraction}: must be in (0, 1]"
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            return f"--learning-rate {self.learning_rate}: must be a positive number"
        if self.malicious < 0 or (self.malicious and not self.attack):
            return f"--malicious {self.malicious}: must be at least 0, and needs --attack"
        return None


@dataclass
class Federation:
    """The data a simulation needs, loaded and verified once."""

    clients: dict  # client id -> (x, y)
    test_set: tuple
    initial_weights: list

    @classmethod
    def load(cls, data_dir, manifest):
        clients = {cid: load_client_data(data_dir, cid) for cid in range(1, manifest["num_clients"] + 1)}
        return cls(clients, load_test_data(data_dir), load_initial_weights(data_dir)[0])


def sample_clients(num_clients, fraction, seed, round_number):
    """The clients of one round: max(1, round(C·K)) of them, drawn from (seed, round) alone."""
    count = max(1, int(round(fraction * num_clients)))
    rng = np.random.default_rng([seed, round_number])
    return sorted(int(c) + 1 for c in rng.choice(num_clients, size=count, replace=False))


def train_round(trainer, federation, sampled, global_weights, configured, settings, round_number):
    """Local training of the sampled clients for one strategy; returns (updates, rejected ids)."""
    shapes = [w.shape for w in global_weights]
    updates, rejected = [], []
    for client_id in sampled:
        x, y = federation.clients[client_id]
        attacking = client_id <= settings.malicious
        labels = flip_labels(y) if attacking and settings.attack == "label_flip" else y
        trainer.train(
            x,
            labels,
            initial_weights=global_weights,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            seed=client_seed(settings.seed, round_number, client_id),
            mu=configured.mu,
            verbose=0,
        )
        try:
            weights = validate_weights(trainer.model.get_weights(), shapes, f"client {client_id}")
        except UpdateError:
            rejected.append(client_id)
            continue
        update = [ClientUpdate(f"client_{client_id}", client_id, weights, len(x), None)]
        if attacking and settings.attack in MODEL_POISONING:
            update, attacked_out = attack_updates(
                update,
                global_weights,
                settings.attack,
                {client_id},
                None,
                seed=[settings.seed, round_number, client_id, 1],
            )
            rejected += [client_id for _ in attacked_out]
        updates += update
    return updates, rejected


def play_round(trainer, federation, sampled, global_weights, configured, settings, round_number, log):
    """One strategy's round: returns (new global weights, its history row)."""
    started = time.perf_counter()
    updates, rejected = train_round(trainer, federation, sampled, global_weights, configured, settings, round_number)
    previous = global_weights
    try:
        global_weights = configured.aggregate([(u.weights, u.num_samples) for u in updates])
    except ValueError as err:
        log(f"round {round_number} {configured.name}: kept the previous global model ({err})")
    metrics, _ = evaluate_weights(trainer.model, global_weights, *federation.test_set)
    drift = round_drift(previous, [u.weights for u in updates], global_weights)
    seconds = time.perf_counter() - started  # as in Flower: training, aggregation, drift and evaluation
    model_bytes = sum(w.nbytes for w in global_weights)
    row = round_row(round_number, metrics, seconds, sampled, rejected, model_bytes, drift=drift)
    return global_weights, row


def run_rounds(federation, configured, settings, results=None, global_weights=None, on_round=None, log=tqdm.write):
    """Play the rounds after results["rounds_completed"] up to settings.rounds; returns (results, global weights).

    `results` and `global_weights` (from an interrupted run) are not modified; `on_round(results, weights)`
    is called after every round, to checkpoint it.
    """
    results = results or new_history({"strategies": [c.name for c in configured]})
    results = {**results, "history": {name: list(rows) for name, rows in results["history"].items()}}
    global_weights = dict(global_weights or {c.name: federation.initial_weights for c in configured})
    trainer = LocalTrainer(build_model(), settings.learning_rate)
    first = results["rounds_completed"] + 1
    for round_number in tqdm(
        range(first, settings.rounds + 1), desc="rounds", unit="round", initial=first - 1, total=settings.rounds
    ):
        sampled = sample_clients(len(federation.clients), settings.fraction, settings.seed, round_number)
        for strategy in configured:
            global_weights[strategy.name], row = play_round(
                trainer, federation, sampled, global_weights[strategy.name], strategy, settings, round_number, log
            )
            results["history"][strategy.name].append(row)
        results["rounds_completed"] = round_number
        if on_round:
            on_round(results, global_weights)
        log(
            f"round {round_number}: "
            + ", ".join(f"{c.name} {100 * results['history'][c.name][-1]['accuracy']:.2f}%" for c in configured)
        )
    return results, global_weights
