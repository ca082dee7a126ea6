"""The report's figures, drawn with matplotlib (Agg: no display needed) and returned as PNG data
URIs, so the page carries every image inline and opens without a network.

Each function takes plain numbers (NumPy arrays, dicts, a DataFrame) and returns one data URI;
what the numbers mean is computed elsewhere (``composer.calibration``,
``composer.inspect_gates``, ``composer.paired``).
"""
from __future__ import annotations

import base64
import io

import numpy as np

DPI = 100
CMAP = "viridis"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_uri(fig) -> str:
    """The figure as a ``data:image/png;base64,...`` URI; the figure is closed."""
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()  # rotated tick labels clear the panel below
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grid(count: int, cols: int, size=(4.2, 3.2)):
    plt = _plt()
    cols = max(1, min(cols, count))
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def training_curves(history, tasks) -> str:
    """Per epoch: train and validation loss per task, task weights, validation AUC per task.
    Columns absent from ``history`` (a DataFrame indexed by epoch) are left out of their panel."""
    panels = [("loss per task", [(f"loss_{t}", f"{t} train") for t in tasks]
               + [(f"val_loss_{t}", f"{t} valid") for t in tasks] + [("loss", "total train"), ("val_loss", "total valid")]),
              ("task weights", [(f"weight_{t}", t) for t in tasks]),
              ("validation AUC", [(f"val_auc_{t}", t) for t in tasks] + [("val_auc", "macro")])]
    panels = [(title, [(c, label) for c, label in lines if c in history.columns]) for title, lines in panels]
    panels = [p for p in panels if p[1]]
    fig, axes = _grid(len(panels), 3, size=(4.6, 3.2))
    epochs = np.arange(1, len(history) + 1)  # rows are epochs in order, whatever the index holds
    for ax, (title, lines) in zip(axes, panels):
        for column, label in lines:
            values = np.asarray(history[column], dtype=float)
            style = "--" if column.startswith("val_") and title.startswith("loss") else "-"
            ax.plot(epochs, values, style, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return png_uri(fig)


def heatmap(matrix, rows, cols, title: str, vmin=None, vmax=None, digits: int = 3, cmap=CMAP) -> str:
    """One annotated heatmap; NaN cells are left blank (a gate that does not cover an expert)."""
    return heatmaps([(matrix, rows, cols, title)], vmin=vmin, vmax=vmax, digits=digits, cmap=cmap)


def heatmaps(panels, vmin=None, vmax=None, digits: int = 3, cmap=CMAP, cols: int = 2) -> str:
    """Several annotated heatmaps, ``panels`` = [(matrix, row labels, column labels, title)]."""
    plt = _plt()
    sizes = [(max(3.2, 0.85 * len(c) + 2.2), max(1.6, 0.42 * len(r) + 1.3)) for _, r, c, _ in panels]
    cols = max(1, min(cols, len(panels)))
    width = max(w for w, _ in sizes)
    fig, axes = plt.subplots((len(panels) + cols - 1) // cols, cols, squeeze=False,
                             figsize=(width * cols, sum(h for _, h in sizes[::cols])))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (matrix, rows, columns, title) in zip(axes.flat, panels):
        m = np.asarray(matrix, dtype=float)
        finite = m[np.isfinite(m)]
        lo = vmin if vmin is not None else (finite.min() if finite.size else 0.0)
        hi = vmax if vmax is not None else (finite.max() if finite.size else 1.0)
        image = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1e-9,
                          aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title(title, fontsize=10)
        middle = (lo + hi) / 2
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.{digits}f}", ha="center", va="center", fontsize=7,
                        color="white" if v < middle else "black")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return png_uri(fig)


def calibration_plots(curves: dict) -> str:
    """Per task a reliability diagram: predicted against observed positive rate per bin, with
    the diagonal of perfect calibration and the ECE in the title. ``curves``: task ->
    ``composer.calibration.Calibration``."""
    fig, axes = _grid(len(curves), 3, size=(3.6, 3.4))
    for ax, (task, cal) in zip(axes, curves.items()):
        top = max(float(np.max(cal.predicted, initial=0)), float(np.max(cal.observed, initial=0)), 1e-3) * 1.05
        ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle=":", label="perfect")
        ax.plot(cal.predicted, cal.observed, marker="o", label="bins (equal counts)")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed positive rate")
        ax.set_title(f"{task}: ECE {cal.ece:.4f}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    return png_uri(fig)


def score_distributions(scores: dict, labels: dict) -> str:
    """Per task the histogram of predicted probabilities, positives and negatives apart
    (densities, so a rare positive class stays visible)."""
    fig, axes = _grid(len(scores), 3, size=(3.8, 3.0))
    for ax, (task, s) in zip(axes, scores.items()):
        y = labels[task]
        bins = np.linspace(0, 1, 41)
        for value, name, color in ((0, "negatives", "#4c72b0"), (1, "positives", "#dd8452")):
            part = s[y == value]
            if len(part):
                ax.hist(part, bins=bins, density=True, alpha=0.55, color=color, label=f"{name} ({len(part):,})")
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    return png_uri(fig)


def metric_bars(models: list[str], metrics: list[str], runs: dict, baseline: str | None = None) -> str:
    """One panel per metric: per model the mean over seeds as a bar, the standard deviation as an
    error bar and each seed's value as a dot. ``runs``: (model, metric) -> values (None: n/a)."""
    fig, axes = _grid(len(metrics), 3, size=(max(3.2, 0.9 * len(models) + 1.6), 3.0))
    colors = _colors(len(models))
    for ax, metric in zip(axes, metrics):
        for i, model in enumerate(models):
            values = np.array([v for v in runs.get((model, metric), []) if v is not None], dtype=float)
            if not len(values):
                continue
            ax.bar(i, values.mean(), yerr=values.std() if len(values) > 1 else None, capsize=4,
                   color=colors[i], alpha=0.8, edgecolor="black" if model == baseline else None)
            ax.plot(np.full(len(values), i), values, "k.", markersize=5)
        everything = [v for m in models for v in runs.get((m, metric), []) if v is not None]
        if everything:
            lo, hi = min(everything), max(everything)
            pad = max((hi - lo) * 0.6, 0.005)
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(range(len(models)), models, rotation=25, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    return png_uri(fig)


def paired_bars(models: list[str], metrics: list[str], diffs: dict, baseline: str) -> str:
    """One panel per metric: per model its mean paired difference against ``baseline`` (bar) and
    each pair's difference (dots). ``diffs``: (model, metric) -> list of differences."""
    fig, axes = _grid(len(metrics), 3, size=(max(3.2, 0.9 * len(models) + 1.6), 3.0))
    colors = _colors(len(models) + 1)[1:]
    for ax, metric in zip(axes, metrics):
        for i, model in enumerate(models):
            d = np.asarray(diffs.get((model, metric), []), dtype=float)
            if not len(d):
                continue
            ax.bar(i, d.mean(), color=colors[i], alpha=0.8)
            ax.plot(np.full(len(d), i), d, "k.", markersize=5)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(models)), models, rotation=25, ha="right", fontsize=8)
        ax.set_title(f"{metric} - {baseline}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    return png_uri(fig)


def _colors(n: int):
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]
