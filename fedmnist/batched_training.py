"""The batched local trainer: a group of clients trained at once, in one TensorFlow computation.

It computes what LocalTrainer computes for each client (the same data order,
dropout masks, loss, FedProx and SCAFFOLD terms and optimizer step), for G
clients together: every weight gets a leading client axis, the convolutions
become grouped convolutions (client g's channels are group g) and the dense
layers batched matrix products. The loss is the sum of the clients' losses, so
each client's weights receive exactly their own gradient. Clients of unequal size
take different numbers of steps: a group runs in segments, each until its next
client finishes, which then leaves the computation (a last, partial batch is
padded, and a padded example contributes nothing).

One computation over G clients keeps both cores busy on small batches (B = 10),
where one client alone leaves most of the machine idle
(benchmarks/rounds.py measures it).
"""

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fedmnist.defaults import LEARNING_RATE, OPTIMIZER
from fedmnist.training import epoch_orders
from model import build_model

GROUP_SIZE = 10  # clients per computation: McMahan et al.'s C·K = 10; more gained nothing on 2 cores
DROPOUT_RATE = 0.5  # model.py's
ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}  # keras.optimizers.Adam's defaults, as LocalTrainer uses


@dataclass(frozen=True)
class BatchedClient:
    """One client's local training: its data, start, seed and client-side terms."""

    x: np.ndarray
    y: np.ndarray
    weights: list  # the start, w⁰
    seed: int  # its data order and dropout masks (fedmnist.seeds.client_training_seed)
    mu: float = 0.0  # FedProx's proximal weight
    correction: list | None = None  # SCAFFOLD's c − cᵢ


def training_groups(step_counts, group_size=GROUP_SIZE):
    """Split clients into groups of at most `group_size`, clients with similar step counts together.

    Clients are taken from the most steps to the fewest, so the members of a
    group finish close together and its segments (fedmnist's train_group) stay
    wide. The groups depend on the step counts alone: the same clients give the
    same groups, whatever the number of worker processes.
    """
    order = sorted(range(len(step_counts)), key=lambda i: (-step_counts[i], i))
    return [order[start : start + group_size] for start in range(0, len(order), group_size)]


def step_schedule(num_examples, epochs, batch_size, seed):
    """(indices, lengths): client-local example indices of every step, padded to B, and each step's batch size."""
    steps_per_epoch = math.ceil(num_examples / batch_size)
    indices = np.zeros((epochs * steps_per_epoch, batch_size), np.int64)
    lengths = np.zeros(epochs * steps_per_epoch, np.int32)
    for epoch, order in enumerate(epoch_orders(seed, num_examples, epochs)):
        for batch in range(steps_per_epoch):
            chosen = order[batch * batch_size : (batch + 1) * batch_size]
            step = epoch * steps_per_epoch + batch
            indices[step, : len(chosen)], lengths[step] = chosen, len(chosen)
    return indices, lengths


# ---------------------------------------------------------------------------
# The CNN of model.py, G clients at once
# ---------------------------------------------------------------------------


def grouped_conv(x, kernel, bias):
    """Client g's 3×3 'same' convolution on channel group g. x: (B, H, W, G·Cin); kernel: (G, 3, 3, Cin, Cout)."""
    groups, height, width, channels_in, channels_out = kernel.shape
    stacked = tf.reshape(tf.transpose(kernel, [1, 2, 3, 0, 4]), [height, width, channels_in, groups * channels_out])
    return tf.nn.relu(tf.nn.conv2d(x, stacked, 1, "SAME") + tf.reshape(bias, [groups * channels_out]))


def grouped_logits(params, images, dropout_masks):
    """The CNN's logits for G clients. images: (G, B, 28, 28, 1); dropout_masks: (G, B, 256), 0 or 1/(1 − rate)."""
    groups, batch = images.shape[0], tf.shape(images)[1]
    x = tf.reshape(tf.transpose(images, [1, 2, 3, 0, 4]), [batch, 28, 28, groups])
    for layer in range(3):
        x = tf.nn.max_pool2d(grouped_conv(x, params[2 * layer], params[2 * layer + 1]), 2, 2, "VALID")
    x = tf.reshape(tf.transpose(tf.reshape(x, [batch, 3, 3, groups, 128]), [3, 0, 1, 2, 4]), [groups, batch, 1152])
    hidden = tf.nn.relu(tf.matmul(x, params[6]) + params[7][:, None, :]) * dropout_masks
    return tf.matmul(hidden, params[8]) + params[9][:, None, :]


def dropout_masks(seeds, steps, lengths, batch_size):
    """Each client's dropout mask of this step, as Keras's Dropout draws it: seed [client seed, step]."""
    ones = tf.ones([batch_size, 256])
    masks = []
    for g in range(seeds.shape[0]):
        seed = tf.stack([seeds[g], steps[g]])
        mask = tf.nn.experimental.stateless_dropout(ones[: lengths[g]], rate=DROPOUT_RATE, seed=seed)
        masks.append(tf.pad(mask, [[0, batch_size - lengths[g]], [0, 0]]))
    return tf.stack(masks)


class BatchedTrainer:
    """Trains groups of clients' copies of the CNN at once; one instance per process, reused across rounds."""

    def __init__(self, learning_rate=LEARNING_RATE, optimizer=OPTIMIZER, group_size=GROUP_SIZE):
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer {optimizer!r}: the batched trainer has 'sgd' and 'adam'")
        self.learning_rate, self.optimizer, self.group_size = float(learning_rate), optimizer, group_size
        self.shapes = [tuple(w.shape) for w in build_model().weights]
        self._programs = {}  # the compiled training loop, by (clients in the segment, client terms)

    def train(self, clients, epochs, batch_size):
        """The trained weights of each BatchedClient (a list of arrays each), in order."""
        schedules = [step_schedule(len(c.y), epochs, batch_size, c.seed) for c in clients]
        trained = [None] * len(clients)
        for group in training_groups([len(s[1]) for s in schedules], self.group_size):
            results = self.train_group([clients[i] for i in group], [schedules[i] for i in group], batch_size)
            for i, weights in zip(group, results):
                trained[i] = weights
        return trained

    def train_group(self, clients, schedules, batch_size):
        """Train one group. A client whose steps are over leaves the computation: the group runs in segments, each
        until the next client finishes, so nobody computes padding for a finished client."""
        step_counts = np.array([len(lengths) for _, lengths in schedules])
        groups, steps = len(clients), int(step_counts.max())
        offsets = np.cumsum([0] + [len(c.y) for c in clients])
        pad = offsets[-1]  # the index of an all-zero image that the padded slots of a last, partial batch read
        images = tf.constant(np.concatenate([c.x for c in clients] + [np.zeros((1, 28, 28, 1), np.float32)]))
        labels = tf.constant(np.concatenate([c.y for c in clients] + [np.zeros(1, np.int64)]).astype(np.int64))
        indices = np.full((steps, groups, batch_size), pad, np.int64)
        lengths = np.zeros((steps, groups), np.int32)
        for g, (client_indices, client_lengths) in enumerate(schedules):
            n = len(client_lengths)
            lengths[:n, g] = client_lengths
            valid = np.arange(batch_size)[None, :] < client_lengths[:, None]
            indices[:n, g] = np.where(valid, client_indices + offsets[g], pad)
        terms = any(c.mu for c in clients) or any(c.correction is not None for c in clients)
        seeds = np.array([c.seed for c in clients], np.int64)
        state, active, start, trained = self.initial_state(clients), np.arange(groups), 0, [None] * groups
        while len(active):
            stop = int(step_counts[active].min())
            self._program(len(active), terms)(
                state,
                images,
                labels,
                tf.constant(indices[start:stop][:, active]),
                tf.constant(lengths[start:stop][:, active]),
                tf.constant(seeds[active]),
                tf.constant(start, tf.int64),
            )
            finished = step_counts[active] == stop
            for position in np.flatnonzero(finished):
                trained[active[position]] = [p[position].numpy() for p in state["params"]]
            remaining = np.flatnonzero(~finished)
            active, start = active[remaining], stop
            state = subset(state, remaining) if len(active) else None
        return trained

    def initial_state(self, clients):
        """Variables of the group: weights, FedProx's anchors and μ, SCAFFOLD's corrections, optimizer moments."""

        def stacked(pick):
            return [np.stack([np.asarray(pick(c)[i], np.float32) for c in clients]) for i in range(len(self.shapes))]

        zeros = [np.zeros((len(clients), *shape), np.float32) for shape in self.shapes]
        starts = stacked(lambda c: c.weights)
        corrections = stacked(
            lambda c: c.correction if c.correction is not None else [np.zeros(s) for s in self.shapes]
        )
        adam = self.optimizer == "adam"
        return {
            "params": [tf.Variable(w) for w in starts],
            "anchors": [tf.constant(w) for w in starts],
            "corrections": [tf.constant(c) for c in corrections],
            "mu": tf.constant([c.mu for c in clients], tf.float32),
            "moments": [tf.Variable(z) for z in zeros] if adam else [],
            "velocities": [tf.Variable(z) for z in zeros] if adam else [],
        }

    def _program(self, groups, terms):
        key = (groups, terms)
        if key not in self._programs:
            update = fused_update(self.optimizer, terms)

            def all_steps(state, images, labels, indices, lengths, seeds, first_step):
                for t in tf.range(tf.shape(indices)[0]):
                    step = first_step + tf.cast(t, tf.int64)
                    self._one_step(state, images, labels, indices[t], lengths[t], seeds, step, update)

            self._programs[key] = tf.function(all_steps, reduce_retracing=True)
        return self._programs[key]

    def _one_step(self, state, images, labels, indices, lengths, seeds, step, update):
        """One optimizer step of every client of the segment."""
        params, batch_size = state["params"], indices.shape[1]
        valid = tf.cast(tf.range(batch_size)[None, :] < lengths[:, None], tf.float32)
        masks = dropout_masks(seeds, tf.fill(tf.shape(seeds), step), lengths, batch_size)
        with tf.GradientTape() as tape:
            logits = grouped_logits(params, tf.gather(images, indices), masks)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.gather(labels, indices), logits=logits
            )
            count = tf.maximum(tf.cast(lengths, tf.float32), 1.0)
            loss = tf.reduce_sum(tf.reduce_sum(per_example * valid, axis=1) / count)
        gradients = tape.gradient(loss, params)
        adam = self.optimizer == "adam"
        changed = [[w, m, v] for w, m, v in zip(params, state["moments"], state["velocities"])] if adam else params
        updated = update(
            changed,
            gradients,
            state["anchors"],
            state["corrections"],
            state["mu"],
            tf.constant(self.learning_rate),
            tf.cast(step + 1, tf.float32),
        )
        for target, value in zip(tf.nest.flatten(changed), tf.nest.flatten(updated)):
            target.assign(value)


def fused_update(optimizer, terms):
    """Every variable's step after its gradient, compiled into one XLA computation.

    With `terms`, each gradient first gets FedProx's μ·(w − w⁰) and SCAFFOLD's
    c − cᵢ (the gradients of μ/2·‖w − w⁰‖² and ⟨w, c − cᵢ⟩). Adam is Keras's update
    step (keras.optimizers.Adam.update_step); fused, its arithmetic may round
    differently in the last bit.
    """
    beta_1, beta_2, epsilon = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]

    def one_variable(variables, g, anchor, correction, mu, learning_rate, local_step):
        """[w, m, v] (Adam) or w (SGD) after one step."""
        w = variables[0] if optimizer == "adam" else variables
        if terms:
            g = g + tf.reshape(mu, [-1] + [1] * (len(w.shape) - 1)) * (w - anchor) + correction
        if optimizer != "adam":
            return w - g * learning_rate
        m, v = variables[1:]
        alpha = learning_rate * tf.sqrt(1 - tf.pow(beta_2, local_step)) / (1 - tf.pow(beta_1, local_step))
        new_m = m + (g - m) * (1 - beta_1)
        new_v = v + (tf.square(g) - v) * (1 - beta_2)
        return [w - (new_m * alpha) / (tf.sqrt(new_v) + epsilon), new_m, new_v]

    @tf.function(jit_compile=True)
    def update(variables, gradients, anchors, corrections, mu, learning_rate, local_step):
        return [
            one_variable(v, g, a, c, mu, learning_rate, local_step)
            for v, g, a, c in zip(variables, gradients, anchors, corrections)
        ]

    return update


def subset(state, keep):
    """The group's state for the clients at positions `keep` only: new variables, the constants gathered."""
    rows = tf.constant(keep, tf.int64)

    def variables(values):
        return [tf.Variable(tf.gather(v, rows)) for v in values]

    def constants(values):
        return [tf.gather(c, rows) for c in values]

    return {
        "params": variables(state["params"]),
        "anchors": constants(state["anchors"]),
        "corrections": constants(state["corrections"]),
        "mu": tf.gather(state["mu"], rows),
        "moments": variables(state["moments"]),
        "velocities": variables(state["velocities"]),
    }
