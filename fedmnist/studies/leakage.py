"""What an update or a model gives away about a client's data: two attacks, measured. NumPy and scikit-learn.

Label inference from one update. With the cross-entropy over a softmax, a local
step moves the output bias of class c by −η·mean(p_c − 1[y = c]): the bias of a
class the client does not hold can only fall, that of a class it holds rises
while the model under-predicts it. The server names the classes whose bias rose
in the update (the last array of the model: the output layer's bias). A client
"holds" a class that is at least HELD_SHARE of its examples.

Membership inference (Yeom et al., 2018): an example's loss under a model is the
attacker's score; members (the client's training images) tend to have a lower
loss than non-members (test images). The area under the ROC curve of −loss is
the attack's success: 0.5 is a guess, 1 a perfect separation.
"""

import numpy as np
from sklearn.metrics import roc_auc_score

from fedmnist.privacy import clip_update

NUM_CLASSES = 10
HELD_SHARE = 0.05  # a class is held if it is at least this share of the client's examples


PER_CLASS_MIN = 20  # members and non-members of a class its within-class AUC needs


def held_classes(labels, share=HELD_SHARE):
    """Which of the 10 classes a client holds: a boolean vector."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=NUM_CLASSES)
    return counts >= share * counts.sum()


def output_bias_change(trained, start):
    """The update's change of the output layer's bias (the model's last array), float64."""
    return np.asarray(trained[-1], np.float64) - np.asarray(start[-1], np.float64)


def inferred_classes(bias_change):
    """The classes the server names from one update: those whose output bias rose."""
    return np.asarray(bias_change) > 0


def label_inference_scores(held, bias_changes):
    """How well the sign rule names each client's classes.

    `held` and `bias_changes` are (clients, 10). Returns the fraction of clients
    whose set is named exactly, precision and recall over (client, class) pairs,
    and the AUC of the bias change as a score for "held" (threshold-free).
    """
    held = np.asarray(held, bool)
    changes = np.asarray(bias_changes, np.float64)
    named = inferred_classes(changes)
    true_positives = np.sum(named & held)
    return {
        "exact": float(np.mean(np.all(named == held, axis=1))),
        "precision": float(true_positives / max(1, named.sum())),
        "recall": float(true_positives / max(1, held.sum())),
        "auc": float(roc_auc_score(held.ravel(), changes.ravel())) if 0 < held.sum() < held.size else None,
    }


def locally_noised(delta, clip, noise_multiplier, rng):
    """An update as a client adding its own DP noise would send it: clipped to `clip`, plus N(0, (z·S)²)."""
    clipped, _ = clip_update([np.asarray(d, np.float64) for d in delta], clip)
    return [c + rng.normal(0.0, noise_multiplier * clip, size=c.shape) for c in clipped]


def membership_auc(member_losses, nonmember_losses):
    """Yeom et al.'s loss-threshold attack: the AUC of −loss separating members from non-members."""
    members = np.asarray(member_losses, np.float64)
    others = np.asarray(nonmember_losses, np.float64)
    truth = np.concatenate([np.ones(len(members)), np.zeros(len(others))])
    return float(roc_auc_score(truth, -np.concatenate([members, others])))


def tpr_at_fpr(member_losses, nonmember_losses, fpr=0.01):
    """The loss-threshold attack's true-positive rate at a false-positive rate of `fpr` (Carlini et al., 2022):
    the share of members whose loss is below all but `fpr` of the non-members' losses."""
    threshold = np.quantile(np.asarray(nonmember_losses, np.float64), fpr)
    return float(np.mean(np.asarray(member_losses, np.float64) < threshold))


def within_class_auc(member_losses, member_labels, nonmember_losses, nonmember_labels, min_examples=PER_CLASS_MIN):
    """The loss-threshold attack's AUC within each class that members and non-members both hold at least
    `min_examples` of, averaged over those classes (None if no class has enough): what the attack tells apart
    beyond which classes a client holds, so a split where clients hold few classes cannot inflate it."""
    member_losses, nonmember_losses = np.asarray(member_losses), np.asarray(nonmember_losses)
    member_labels, nonmember_labels = np.asarray(member_labels), np.asarray(nonmember_labels)
    scores = [
        membership_auc(member_losses[member_labels == k], nonmember_losses[nonmember_labels == k])
        for k in range(NUM_CLASSES)
        if min(np.sum(member_labels == k), np.sum(nonmember_labels == k)) >= min_examples
    ]
    return float(np.mean(scores)) if scores else None


def class_matched(pool_labels, member_labels, count, rng):
    """Indices of up to `count` pool examples with the members' class proportions, drawn without replacement,
    so that a membership attack cannot tell members by their classes alone."""
    pool_labels, member_labels = np.asarray(pool_labels), np.asarray(member_labels)
    shares = np.bincount(member_labels, minlength=NUM_CLASSES) / len(member_labels)
    chosen = []
    for label, share in enumerate(shares):
        available = np.flatnonzero(pool_labels == label)
        wanted = min(int(round(share * count)), len(available))
        chosen.append(rng.choice(available, size=wanted, replace=False))
    return np.sort(np.concatenate(chosen))
