"""Evaluation on the common test set, and the figures that show it.

Figure functions return a matplotlib Figure; `save_figure` writes it as a PNG
atomically. Notebooks display the returned figure, scripts just save it.
"""

import json

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import LogFormatter
from scipy import stats
from sklearn.metrics import confusion_matrix, f1_score

from fedmnist import partition
from fedmnist.files import OutputSet, atomic_path
from fedmnist.training import compile_model

EVAL_BATCH_SIZE = 512


def evaluate_weights(model, weights, x, y):
    """Load `weights` into `model` and return accuracy, loss and macro-F1 on (x, y), with the predictions."""
    model.set_weights(weights)
    if not model.compiled:
        compile_model(model)
    probabilities = model.predict(x, batch_size=EVAL_BATCH_SIZE, verbose=0)
    predictions = probabilities.argmax(axis=1)
    metrics = {
        "accuracy": float(np.mean(predictions == y)),
        "loss": float(np.mean(cross_entropy(probabilities, y))),
        "macro_f1": float(f1_score(y, predictions, average="macro")),
    }
    return metrics, predictions


def mcnemar_exact(first_right, second_right):
    """McNemar's exact two-sided p-value for two models' per-image correctness on the same test images.

    Only the discordant images count: b where only the first is right, c where only
    the second is; under no difference b ~ Binomial(b + c, 1/2).
    """
    first, second = np.asarray(first_right, bool), np.asarray(second_right, bool)
    if first.shape != second.shape:
        raise ValueError(f"McNemar needs the same images: {first.shape} against {second.shape}")
    b, c = int(np.sum(first & ~second)), int(np.sum(~first & second))
    p = 1.0 if b + c == 0 else min(1.0, float(2 * stats.binom.cdf(min(b, c), b + c, 0.5)))
    return {"only_first_right": b, "only_second_right": c, "p_value": p}


def cross_entropy(probabilities, y):
    """Each example's loss −log p_y. A NaN output (finite but huge weights overflow the logits) counts as the
    least probable answer, so the loss stays finite."""
    picked = np.clip(np.nan_to_num(probabilities[np.arange(len(y)), y], nan=0.0), 1e-7, 1.0)
    return -np.log(picked)


def per_example_loss(model, weights, x, y):
    """Each example's cross-entropy under `weights` (what a membership attack scores)."""
    model.set_weights(weights)
    return cross_entropy(model.predict(x, batch_size=EVAL_BATCH_SIZE, verbose=0), y)


def save_figure(fig, path, dpi=120):
    """Write `fig` as a PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")


class PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which ticks to label, each written as a plain number (0.6, 2, 1e+21), not 6e−01."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def log_axis(ax):
    """A log-scale y axis labelled with plain numbers (0.5, 2, 1e+21); the minor ticks too within about a decade."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PlainLogFormatter())
    ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))


def legend_below(fig, ax, columns=4):
    """One legend for the whole figure, from `ax`'s labelled lines, under the panels: it covers no curve."""
    handles, labels = ax.get_legend_handles_labels()
    ncol = min(columns, len(labels))
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False)


def write_json_and_figure(json_path, data, figure_path, figure):
    """Replace a results JSON and its figure together (neither lands if either fails); returns their paths."""
    return write_json_and_figures(json_path, data, {figure_path: figure})


def write_json_and_figures(json_path, data, figures):
    """Replace a results JSON and its figures ({path: figure}) as one set: none lands if any fails; their paths.
    The figures are closed: pyplot would otherwise keep each one for the life of a long study."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with OutputSet() as outputs:
            outputs.write_text(json_path, json.dumps(data, indent=2) + "\n")
            for path, figure in figures.items():
                save_figure(figure, outputs.stage(path))
    finally:
        for figure in figures.values():
            plt.close(figure)
    return json_path, *figures


def plot_learning_curves(history, title):
    """Accuracy and loss per epoch, train and validation, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, metric, label in ((axes[0], "accuracy", "Exactitud"), (axes[1], "loss", "Pérdida")):
        ax.plot(epochs, history[metric], "o-", label="entrenamiento")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s--", label="validación (test común)")
        ax.set_xlabel("época")
        ax.set_ylabel(label)
        ax.set_xticks(epochs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(y_true, y_pred, title):
    """Seaborn heatmap of the 10×10 confusion matrix, counts annotated."""
    matrix = confusion_matrix(y_true, y_pred, labels=range(10))
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax, annot_kws={"size": 8})
    ax.set_xlabel("predicción")
    ax.set_ylabel("etiqueta real")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def binomial_half_width(accuracy, num_samples, z=1.96):
    """Half-width of the normal-approximation 95 % interval of an accuracy measured on `num_samples` images."""
    return z * np.sqrt(accuracy * (1 - accuracy) / num_samples)


ZOOM_SPAN = 10.0  # points: models further than this below the best get a full-scale panel of their own


def plot_method_comparison(method_accuracy, local_accuracy, title, num_samples):
    """Dot plot: each strategy's and each local model's test accuracy with its 95 % sampling interval.

    Dots, not bars: the differences are fractions of a point, and a bar's length would have to start at zero
    to be honest. The interval is the test set's binomial sampling error alone (one seed, one split). When a
    model lies more than ZOOM_SPAN points below the best (DP-FedAvg with few clients, an attacked rule), a
    first panel shows every model on the full 0-100 scale and a second zooms on those near the best.
    """
    names = list(method_accuracy) + [f"cliente {cid} (local)" for cid in local_accuracy]
    values = 100 * np.array(list(method_accuracy.values()) + list(local_accuracy.values()), dtype=np.float64)
    errors = 100 * binomial_half_width(values / 100, num_samples)
    colors = ["tab:blue"] * len(method_accuracy) + ["tab:gray"] * len(local_accuracy)
    near = values >= values.max() - ZOOM_SPAN
    panels = [np.ones(len(values), bool), near] if not near.all() else [near]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(8 if len(panels) == 1 else 13, 0.45 * len(names) + 1.6), squeeze=False
    )
    rows = np.arange(len(names))[::-1]
    for index, (ax, shown) in enumerate(zip(axes[0], panels)):
        labelled = shown & ~near if index == 0 and len(panels) == 2 else shown  # the zoom labels the close ones
        for i in np.flatnonzero(shown):
            row, value = rows[i], values[i]
            ax.errorbar(value, row, xerr=errors[i], fmt="o", color=colors[i], capsize=3)
            if labelled[i]:
                ax.annotate(
                    f"{value:.2f}", (value, row), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8
                )
        ax.set_yticks(rows, names)
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.grid(axis="x", alpha=0.3)
    if len(panels) == 2:
        axes[0][0].set_xlim(0, 100)
        axes[0][0].set_title("todos, escala completa")
        axes[0][1].set_title(f"a menos de {ZOOM_SPAN:g} puntos del mejor (ampliado)")
    fig.supxlabel(f"exactitud en test (%); barras: intervalo del 95 % por muestreo de {num_samples} imágenes")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracy_by_round(by_round, labels, num_samples):
    """Each method's test accuracy round by round, with its 95 % sampling interval, on the full 0-100 scale.

    `by_round` is resultados.json's list of {round, accuracy: {key: accuracy}}; `labels` names each key. In
    round r every rule is applied to the same updates, which started from the model published after round r - 1.
    """
    fig, ax = plt.subplots(figsize=(8, 4.5))
    keys = list(dict.fromkeys(key for entry in by_round for key in entry["accuracy"]))
    offsets = np.linspace(-0.15, 0.15, len(keys)) if len(keys) > 1 else [0.0]
    for key, offset in zip(keys, offsets):
        points = [(entry["round"], 100 * entry["accuracy"][key]) for entry in by_round if key in entry["accuracy"]]
        rounds, values = (np.array(column, dtype=np.float64) for column in zip(*points))
        errors = 100 * binomial_half_width(values / 100, num_samples)
        ax.errorbar(rounds + offset, values, yerr=errors, fmt="o-", capsize=3, label=labels.get(key, key))
    ax.set_ylim(0, 100)
    ax.set_xticks(sorted({entry["round"] for entry in by_round}))
    ax.set_xlabel("ronda")
    ax.set_ylabel("exactitud en test (%)")
    ax.set_title(
        "Exactitud por ronda: cada regla sobre las actualizaciones de la ronda\n"
        f"(barras: intervalo del 95 % por muestreo de {num_samples} imágenes de test)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    legend_below(fig, ax)
    return fig


def plot_partition(manifest):
    """Stacked bar per client: how many examples of each class it holds."""
    clients = list(manifest["clients"])
    histograms = np.array([manifest["clients"][c]["class_histogram"] for c in clients])
    fig, ax = plt.subplots(figsize=(min(18, max(7, 0.35 * len(clients) + 3)), 4.5))
    bottom = np.zeros(len(clients))
    colors = plt.get_cmap("tab10").colors
    for digit in range(histograms.shape[1]):
        ax.bar(clients, histograms[:, digit], bottom=bottom, color=colors[digit], label=str(digit), width=0.8)
        bottom += histograms[:, digit]
    ax.set_xlabel("cliente")
    ax.set_ylabel("ejemplos")
    row = partition.REGISTRY.get(manifest["partition"])
    detail = row.caption(manifest) if row else ""
    ax.set_title(f"Partición {manifest['partition']}{detail}: clases por cliente")
    ax.legend(title="dígito", ncol=10, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    if len(clients) > 20:
        ax.set_xticks(clients[:: max(1, len(clients) // 20)])
    fig.tight_layout()
    return fig
