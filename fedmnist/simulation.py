"""Multi-round federated learning on one machine: R rounds of sample → local training → aggregation.

Each round samples a fraction C of the K clients (the same clients for every
strategy), trains each with the project's LocalTrainer from that strategy's
current global weights, takes the strategy's server step (its registered rule,
then its server optimizer or SCAFFOLD's control variates where it has one), and
evaluates the new global model on the common test set. The rows are
fedmnist/history.py's; experiments/simulation.py is the command line.

Local training runs on one of two trainers. The batched trainer (the default,
fedmnist/batched_training.py) trains each strategy's clients of a round together,
in groups that depend on those clients alone, in this process, and evaluates here
too, on all cores: `workers` plays no part. The per-client
trainer runs one LocalTrainer call per client, in this process (workers = 0,
TensorFlow's default threading) or in a pool of worker processes with one
TensorFlow thread each. Every client's training depends only on its task, so
the results are the same for any number of workers ≥ 1 (and differ from
workers = 0, and between trainers, only by floating-point rounding).
"""

import math
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from fedmnist import privacy, scaffold, seeds
from fedmnist.attacks import MODEL_POISONING, attack_updates, trains_on
from fedmnist.batched_training import BatchedClient, BatchedTrainer
from fedmnist.data import (
    load_client_data,
    load_initial_weights,
    load_test_data,
    load_validation_data,
    read_manifest,
)
from fedmnist.defaults import (
    BATCH_SIZE,
    FRACTION,
    LEARNING_RATES,
    OPTIMIZER,
    ROUND_EPOCHS,
    ROUNDS,
    SAMPLING,
    SEED,
    TRAINER,
    WORKERS,
)
from fedmnist.drift import control_norms, round_drift
from fedmnist.evaluation import evaluate_weights
from fedmnist.history import StrategyState, new_history, round_row, run_config
from fedmnist.seeds import client_training_seed
from fedmnist.settings import SETTINGS
from fedmnist.strategies import RoundContext
from fedmnist.training import LocalTrainer
from fedmnist.updates import ClientUpdate, UpdateError, validate_weights
from model import build_model


@dataclass(frozen=True)
class RoundSettings:
    """How every round runs (the papers' symbols: R, C, E, B)."""

    rounds: int = ROUNDS
    fraction: float = FRACTION
    sampling: str = SAMPLING  # "fixed": round(C·K) clients a round; "poisson": each client with probability C
    epochs: int = ROUND_EPOCHS
    batch_size: int = BATCH_SIZE
    optimizer: str = OPTIMIZER  # the local optimizer
    learning_rate: float | None = None  # the local learning rate (None: the optimizer's default)
    seed: int = SEED  # of client sampling, local training and the noise attack
    attack: str | None = None
    malicious: int = 0  # M, the attackers: client ids 1..M
    trainer: str = TRAINER  # "batched": a round's clients in one computation; "per-client": one at a time
    workers: int = WORKERS  # the per-client trainer's processes (0: this one)

    def __post_init__(self):
        if self.learning_rate is None and isinstance(self.optimizer, str) and self.optimizer in LEARNING_RATES:
            object.__setattr__(self, "learning_rate", LEARNING_RATES[self.optimizer])

    def problems(self):
        """The first setting that cannot run, as a message naming its option (fedmnist/settings.py), or None."""
        for setting in SETTINGS.values():
            if problem := setting.problem(getattr(self, setting.name)):
                return problem
        if self.malicious and not self.attack:
            return f"--malicious {self.malicious}: needs --attack"
        return None


def history_config(settings, manifest, configured, *, runtime, scenario, data):
    """The config block a history of these settings records (fedmnist.history.run_config), for `configured`."""
    return run_config(
        runtime=runtime,
        scenario=scenario,
        data=data,
        manifest=manifest,
        strategies=[c.name for c in configured],
        parameters={c.name: c.values for c in configured if c.values},
        training_threads=1 if settings.workers and settings.trainer == "per-client" else None,
        **{name: getattr(settings, name) for name, row in SETTINGS.items() if row.recorded},
    )


@dataclass
class Federation:
    """The data a simulation needs, loaded and verified once."""

    clients: dict  # client id -> (x, y)
    test_set: tuple
    initial_weights: list
    data_dir: object = None  # where the worker processes load the same data from
    validation_set: tuple | None = None  # what choices are made on (None: a split from before validation sets)

    @classmethod
    def load(cls, data_dir, manifest):
        clients = {cid: load_client_data(data_dir, cid) for cid in range(1, manifest["num_clients"] + 1)}
        validation = load_validation_data(data_dir) if "validation" in manifest else None
        return cls(clients, load_test_data(data_dir), load_initial_weights(data_dir)[0], data_dir, validation)


@dataclass(frozen=True)
class ClientTask:
    """One client's local training in one round, for one strategy: everything its result depends on."""

    client_id: int
    weights: list  # the strategy's global weights this round
    epochs: int
    batch_size: int
    seed: int
    mu: float = 0.0
    correction: list | None = None  # SCAFFOLD's c − cᵢ
    attack: str | None = None  # a data-poisoning attack this client trains under (fedmnist/attacks.py)
    control: bool = False  # also return SCAFFOLD's cᵢ⁺


@dataclass
class LocalWork:
    """What one process needs to train any client and evaluate any model: the data and its trainers."""

    federation: Federation
    trainer: LocalTrainer
    batched: BatchedTrainer | None = None  # the batched trainer, in the run's own process

    def labels(self, task):
        y = self.federation.clients[task.client_id][1]
        return trains_on(task.attack, y)

    def train(self, task):
        """(trained weights, cᵢ⁺ or None) for `task`."""
        self.trainer.train(
            self.federation.clients[task.client_id][0],
            self.labels(task),
            initial_weights=task.weights,
            epochs=task.epochs,
            batch_size=task.batch_size,
            seed=task.seed,
            mu=task.mu,
            correction=task.correction,
            verbose=0,
        )
        return self.with_control(task, self.trainer.model.get_weights())

    def train_together(self, tasks):
        """[(trained weights, cᵢ⁺ or None)] for `tasks` (one E and B), trained together by the batched trainer."""
        if not tasks:
            return []
        clients = [
            BatchedClient(
                self.federation.clients[t.client_id][0], self.labels(t), t.weights, t.seed, t.mu, t.correction
            )
            for t in tasks
        ]
        trained = self.batched.train(clients, tasks[0].epochs, tasks[0].batch_size)
        return [self.with_control(task, weights) for task, weights in zip(tasks, trained)]

    def with_control(self, task, trained):
        if not task.control:
            return trained, None
        steps = task.epochs * math.ceil(len(self.federation.clients[task.client_id][1]) / task.batch_size)
        control = scaffold.new_client_control(task.correction, task.weights, trained, steps, self.trainer.learning_rate)
        return trained, control

    def evaluate(self, weights):
        """Test metrics, and the validation accuracy where the split has a validation set."""
        metrics = evaluate_weights(self.trainer.model, weights, *self.federation.test_set)[0]
        if self.federation.validation_set is not None:
            validation = evaluate_weights(self.trainer.model, weights, *self.federation.validation_set)[0]
            metrics["validation_accuracy"] = validation["accuracy"]
        return metrics


_work = None  # this process's LocalWork, set by start_work


def start_work(federation_or_dir, learning_rate, optimizer, parent=None, batched=False):
    """Set up this process's LocalWork (in a worker of process `parent`: from the data folder, with one
    TensorFlow thread; with `batched`, the batched trainer too)."""
    global _work
    if parent is not None:
        exit_with_parent(parent)
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    federation = federation_or_dir
    if not isinstance(federation, Federation):
        federation = Federation.load(federation_or_dir, read_manifest(federation_or_dir))
    trainer = LocalTrainer(build_model(), learning_rate, optimizer)
    _work = LocalWork(federation, trainer, BatchedTrainer(learning_rate, optimizer) if batched else None)


def exit_with_parent(parent):
    """End this worker process as soon as `parent`, the run that started it, is gone (killed, say), even if that
    happened before this worker got here; not after the task at hand."""

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def train_task(task):
    return _work.train(task)


def evaluate_task(weights):
    return _work.evaluate(weights)


class Executor:
    """Trains and evaluates in this process (the batched trainer, or workers = 0) or in a pool of single-thread
    worker processes, results in order."""

    def __init__(self, federation, settings):
        self.pool, self.batched = None, settings.trainer == "batched"
        if settings.workers and not self.batched:
            self.pool = ProcessPoolExecutor(
                settings.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_work,
                initargs=(federation.data_dir, settings.learning_rate, settings.optimizer, os.getpid()),
            )
        else:
            start_work(federation, settings.learning_rate, settings.optimizer, batched=self.batched)

    def train(self, task_lists):
        """[(trained weights, cᵢ⁺ or None) of each task] of each list; the batched trainer groups each list's
        clients on their own, so a client's result never depends on another strategy's clients."""
        if self.batched:
            return [_work.train_together(tasks) for tasks in task_lists]
        flat = iter(self.map(train_task, [task for tasks in task_lists for task in tasks]))
        return [[next(flat) for _ in tasks] for tasks in task_lists]

    def map(self, function, items):
        return list(self.pool.map(function, items)) if self.pool else [function(item) for item in items]

    def close(self):
        if self.pool:
            self.pool.shutdown(cancel_futures=True)


def strategy_problems(configured, settings, num_clients=None):
    """The first strategy that cannot run with these settings (and K clients, if known), as a message naming the
    fix, or None."""
    for c in configured:
        needed = c.strategy.local_optimizer
        if needed and settings.optimizer != needed:
            return (
                f"strategy {c.name!r}: {c.strategy.name} is defined for {needed} clients, not {settings.optimizer}; "
                f"use --optimizer {needed}"
            )
        if c.strategy.private and settings.fraction < 1 and settings.sampling != "poisson":
            return (
                f"strategy {c.name!r}: {c.strategy.name}'s ε assumes each client joins a round independently with "
                f"probability C; use --sampling poisson (or --fraction 1)"
            )
        if (
            c.strategy.private
            and num_clients
            and (problem := privacy.problem(c.values, settings.fraction * num_clients))
        ):
            return f"strategy {c.name!r}: {problem}"
    return None


def sample_clients(num_clients, fraction, seed, round_number, sampling=SAMPLING):
    """The clients of one round, drawn from (seed, round) alone.

    "fixed": max(1, round(C·K)) of them; "poisson": each with probability C, so a
    round may have any number, none included.
    """
    rng = seeds.rng(seed, "sampling", round_number)
    if sampling == "poisson":
        return [int(c) + 1 for c in np.flatnonzero(rng.random(num_clients) < fraction)]
    count = max(1, int(round(fraction * num_clients)))
    return sorted(int(c) + 1 for c in rng.choice(num_clients, size=count, replace=False))


def client_tasks(configured, state, sampled, settings, round_number):
    """The ClientTasks of one strategy's round."""
    correction = configured.strategy.client_correction
    return [
        ClientTask(
            client_id,
            state.weights,
            settings.epochs,
            settings.batch_size,
            client_training_seed(settings.seed, round_number, client_id),
            mu=configured.mu,
            correction=correction(state.server, state.clients.get(client_id), state.weights) if correction else None,
            attack=settings.attack if client_id <= settings.malicious else None,
            control=correction is not None,
        )
        for client_id in sampled
    ]


def checked_updates(federation, tasks, trained, global_weights, settings, round_number):
    """Validate each trained model (and cᵢ⁺), apply the model-poisoning attacks; (updates, controls, rejected ids)."""
    shapes = [w.shape for w in global_weights]
    updates, controls, rejected = [], {}, []
    for task, (weights, control) in zip(tasks, trained):
        client_id = task.client_id
        try:
            weights = validate_weights(weights, shapes, f"client {client_id}")
            if control is not None:
                controls[client_id] = validate_weights(control, shapes, f"client {client_id}'s control variate")
        except UpdateError:
            rejected.append(client_id)
            continue
        updates.append(
            ClientUpdate(f"client_{client_id}", client_id, weights, len(federation.clients[client_id][1]), None)
        )
    attackers = {u.client_id for u in updates if u.client_id <= settings.malicious}
    if attackers and settings.attack in MODEL_POISONING:
        updates, _ = attack_updates(
            updates,
            global_weights,
            settings.attack,
            attackers,
            None,
            seed=seeds.sequence(settings.seed, "attack", round_number),
        )
        rejected += sorted(attackers - {u.client_id for u in updates})
    return updates, {cid: c for cid, c in controls.items() if cid not in rejected}, rejected


def server_update(configured, state, updates, controls, federation, settings, round_number, log):
    """The strategy's server step: the new StrategyState (the previous one if no update could be aggregated)."""
    pairs = [(u.weights, u.num_samples) for u in updates]
    num_clients = len(federation.clients)
    context = RoundContext(
        settings.seed,
        round_number,
        settings.fraction * num_clients,
        num_clients,
        sum(len(y) for _, y in federation.clients.values()),
        [
            (scaffold.control_delta(c, state.clients.get(cid)), len(federation.clients[cid][1]))
            for cid, c in controls.items()
        ],
    )
    try:
        weights, server = configured.step(pairs, state.weights, state.server, **configured.strategy.inputs(context))
    except ValueError as err:
        log(f"round {round_number} {configured.name}: kept the previous global model ({err})")
        return state
    return StrategyState(weights, server, {**state.clients, **controls})


def play_round(executor, federation, configured, states, sampled, settings, round_number, log):
    """Every strategy's round, their local trainings and evaluations together: (new states, history rows)."""
    started = time.perf_counter()
    tasks = {c.name: client_tasks(c, states[c.name], sampled, settings, round_number) for c in configured}
    trained = iter(executor.train([tasks[c.name] for c in configured]))
    new_states, drift, rejected, payload, spent = {}, {}, {}, {}, {}
    for c in configured:
        results = next(trained)
        state = states[c.name]
        updates, controls, rejected[c.name] = checked_updates(
            federation, tasks[c.name], results, state.weights, settings, round_number
        )
        new_states[c.name] = server_update(c, state, updates, controls, federation, settings, round_number, log)
        spent[c.name] = c.strategy.privacy_spent(
            c.values, settings.fraction, round_number, len(federation.clients), state.server
        )
        drift[c.name] = round_drift(state.weights, [u.weights for u in updates], new_states[c.name].weights)
        if c.strategy.keeps_client_state and drift[c.name] is not None:
            server_control = new_states[c.name].server.get(scaffold.SERVER_CONTROL)
            drift[c.name]["control_norms"] = control_norms(server_control, list(controls.values()))
        payload[c.name] = sum(w.nbytes for w in state.weights) * (2 if c.strategy.keeps_client_state else 1)
    metrics = executor.map(evaluate_task, [new_states[c.name].weights for c in configured])
    # Each strategy's share of the round's wall time: training, aggregation, drift and evaluation, as in Flower.
    seconds = (time.perf_counter() - started) / len(configured)
    rows = {
        c.name: round_row(
            round_number,
            m,
            seconds,
            sampled,
            rejected[c.name],
            payload[c.name],
            drift=drift[c.name],
            privacy=spent[c.name],
        )
        for c, m in zip(configured, metrics)
    }
    return new_states, rows


def run_rounds(federation, configured, settings, results=None, states=None, on_round=None, log=tqdm.write):
    """Play the rounds after results["rounds_completed"] up to settings.rounds; returns (results, states).

    `states` ({strategy name: StrategyState}, from an interrupted run) and
    `results` are not modified; `on_round(results, states)` is called after every
    round, to checkpoint it.
    """
    if problem := strategy_problems(configured, settings, len(federation.clients)):
        raise ValueError(problem)
    results = results or new_history({"strategies": [c.name for c in configured]})
    results = {**results, "history": {name: list(rows) for name, rows in results["history"].items()}}
    states = dict(states or {c.name: StrategyState(federation.initial_weights) for c in configured})
    first = results["rounds_completed"] + 1
    if first > settings.rounds:
        return results, states
    executor = Executor(federation, settings)
    try:
        for round_number in tqdm(
            range(first, settings.rounds + 1), desc="rounds", unit="round", initial=first - 1, total=settings.rounds
        ):
            sampled = sample_clients(
                len(federation.clients), settings.fraction, settings.seed, round_number, settings.sampling
            )
            states, rows = play_round(executor, federation, configured, states, sampled, settings, round_number, log)
            for name, row in rows.items():
                results["history"][name].append(row)
            results["rounds_completed"] = round_number
            if on_round:
                on_round(results, states)
            log(
                f"round {round_number}: "
                + ", ".join(f"{c.name} {100 * results['history'][c.name][-1]['accuracy']:.2f}%" for c in configured)
            )
    finally:
        executor.close()
    return results, states
