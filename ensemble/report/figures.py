"""The report's figures, drawn with matplotlib (Agg backend, set here: no display is needed or used).

Each function takes plain data (what :func:`ensemble.report.analysis.analyze` and
:func:`ensemble.report.page.training_runs` return) and gives the figure's PNG bytes; no torch.
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")   # before pyplot: no display, same bytes everywhere

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from ..tasks import TASKS  # noqa: E402

DPI = 100
ENSEMBLE_COLOUR = "#1f77b4"
SINGLE_COLOUR = "#d62728"
HELDOUT_COLOUR = "#2ca02c"


def png(fig) -> bytes:
    """The figure as PNG bytes (no timestamp in the file); the figure is closed."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    finally:
        plt.close(fig)
    return buf.getvalue()


def _tidy_y(ax, values) -> None:
    """Plain tick labels (no offset), and at least 0.01 of range so that float noise stays flat."""
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    vals = [v for v in values if v is not None]
    if vals and max(vals) - min(vals) < 0.01:
        mid = (max(vals) + min(vals)) / 2
        ax.set_ylim(mid - 0.005, mid + 0.005)


def _metric_label(task: str) -> str:
    return f"{task} dev {TASKS[task].metric}"


def selection_curve(task: str, curve: dict[str, Any]) -> bytes:
    """Dev score as members are added: each step's score (kept steps filled, the rest hollow: a
    rejected candidate, or a caruana step after the kept prefix), the ensemble as it stands after
    each step (a line), the best single candidate (dashed) and the held-out estimate with its
    interval at the chosen size."""
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = curve["steps"]
    x = [s["step"] for s in steps]
    y = [s["score"] for s in steps]
    running, current = [], None
    for s, score in zip(steps, y):        # the ensemble as it stands after each step
        current = score if s["accepted"] or current is None else current
        running.append(current)
    ax.step(x, running, where="post", color=ENSEMBLE_COLOUR, lw=1, alpha=0.7)
    kept = [(a, b) for a, b, s in zip(x, y, steps) if s["accepted"]]
    rest = [(a, b) for a, b, s in zip(x, y, steps) if not s["accepted"]]
    if kept:
        ax.plot(*zip(*kept), "o", color=ENSEMBLE_COLOUR, label=f"in-sample ({curve['mode']}, kept steps)")
    if rest:
        ax.plot(*zip(*rest), "o", mfc="none", color=ENSEMBLE_COLOUR, alpha=0.6, label="steps not kept / rejected")
    ax.axhline(curve["best_single"], color=SINGLE_COLOUR, ls="--", label=f"best single {curve['best_single']:.4f}")
    held = curve.get("heldout")
    if held:
        at = max([a for a, _ in kept], default=1)
        ax.errorbar([at], [held["estimate"]], yerr=[[max(0.0, held["estimate"] - held["low"])], [max(0.0, held["high"] - held["estimate"])]],
                    fmt="s", color=HELDOUT_COLOUR, capsize=5,
                    label=f"held-out estimate {held['estimate']:.4f} ({held['level']:.0%} interval)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _tidy_y(ax, y + [curve["best_single"]] + ([held["low"], held["high"]] if held else []))
    ax.set_xlabel("selection step (members added)")
    ax.set_ylabel(_metric_label(task))
    ax.set_title(f"{task}: selection curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return png(fig)


def _task_axes(tasks: Sequence[str], width: float = 4.0):
    fig, axes = plt.subplots(1, len(tasks), figsize=(width * len(tasks), 3.6), squeeze=False, layout="constrained")
    return fig, dict(zip(tasks, axes[0]))


def learning_curves(runs: list[dict[str, Any]], tasks: Sequence[str]) -> bytes:
    """Every run's dev score per epoch, one panel a task; the epochs kept as candidates are starred."""
    fig, axes = _task_axes(tasks)
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        first = next((t for t in tasks if run["epochs"].get(t)), None)   # the panel that labels the run
        for task, ax in axes.items():
            pts = run["epochs"].get(task) or []
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", ms=3, color=colour,
                    label=run["name"] if task == first else None)
            kept = run["kept"].get(task) or []
            if kept:
                ax.plot([p[0] for p in kept], [p[1] for p in kept], "*", ms=12, color=colour, mec="black")
    for task, ax in axes.items():
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _tidy_y(ax, [p[1] for r in runs for p in r["epochs"].get(task) or []])
        ax.set_xlabel("epoch")
        ax.set_ylabel(_metric_label(task))
        ax.set_title(f"{task} (stars: kept candidates)")
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=min(4, max(len(runs), 1)), fontsize=8)
    return png(fig)


def hyperparameter(name: str, points: dict[str, list[tuple[Any, float, str]]], categorical: bool) -> bytes:
    """Each run's best dev score against one hyperparameter, one panel a task; categorical values
    (architecture, seed) as a strip plot, a learning rate on a log axis."""
    tasks = list(points)
    fig, axes = _task_axes(tasks)
    for task, ax in axes.items():
        pts = points[task]
        if categorical:
            cats = sorted({str(v) for v, _, _ in pts}, key=_natural_key)
            pos = {c: i for i, c in enumerate(cats)}
            jitter = np.linspace(-0.12, 0.12, num=max(len(pts), 2))
            ax.scatter([pos[str(v)] + jitter[i % len(jitter)] for i, (v, _, _) in enumerate(pts)],
                       [s for _, s, _ in pts], color=ENSEMBLE_COLOUR, alpha=0.8)
            ax.set_xticks(range(len(cats)), cats, rotation=20 if len(cats) > 4 else 0)
            ax.set_xlim(-0.6, len(cats) - 0.4)
        else:
            ax.scatter([v for v, _, _ in pts], [s for _, s, _ in pts], color=ENSEMBLE_COLOUR, alpha=0.8)
            if name == "lr" and all(v > 0 for v, _, _ in pts):
                ax.set_xscale("log")   # labelled at the rates tried, not at every minor tick of the decade
                values = sorted({v for v, _, _ in pts})
                ax.set_xticks(values, [f"{v:g}" for v in values], rotation=20 if len(values) > 4 else 0)
                ax.xaxis.set_minor_formatter(NullFormatter())
        _tidy_y(ax, [p[1] for p in pts])
        ax.set_xlabel(name)
        ax.set_ylabel(f"best {_metric_label(task)}")
        ax.set_title(f"{task}: dev score against {name}")
        ax.grid(alpha=0.3)
    return png(fig)


def search_history(study: str, points: list[tuple[int, float, str]]) -> bytes:
    """A search's optimisation history: each trial's best mean dev score (pruned trials hollow) and
    the best so far."""
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    for state, face in (("complete", ENSEMBLE_COLOUR), ("pruned", "none")):
        pts = [(n, v) for n, v, s in points if s == state]
        ax.scatter([n for n, _ in pts], [v for _, v in pts], facecolors=face, edgecolors=ENSEMBLE_COLOUR, label=state)
    order = sorted(points)
    best = list(np.maximum.accumulate([v for _, v, _ in order])) if order else []
    ax.step([n for n, _, _ in order], best, where="post", color=HELDOUT_COLOUR, label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("best mean dev score")
    ax.set_title(f"search {study}: optimisation history")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig)


def _natural_key(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _heatmap(ax, m: np.ndarray, labels: Sequence[str], fmt: str, cmap: str, vmin=None, vmax=None) -> None:
    ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    lo = 0 if vmin is None else vmin
    hi = (np.nanmax(m) if m.size else 0) if vmax is None else vmax
    for (i, j), v in np.ndenumerate(m):   # white text on the dark cells
        ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=8,
                color="white" if v > lo + 0.6 * (hi - lo) else "black")


def confusion(task: str, ensemble: list[list[int]], single: list[list[int]]) -> bytes:
    """The ensemble's and the best single candidate's confusion matrices side by side (counts)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    k = len(ensemble)
    labels = [str(i) for i in range(k)]
    for ax, (title, m) in zip(axes, (("ensemble", ensemble), ("best single", single))):
        _heatmap(ax, np.asarray(m), labels, "d", "Blues", vmin=0, vmax=max(np.max(ensemble), np.max(single), 1))
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(f"{task}: {title}")
    return png(fig)


def correlation(task: str, matrix: list[list[float]], labels: Sequence[str]) -> bytes:
    """The members' pairwise correlation of predictions as a heatmap."""
    size = 2.5 + 0.55 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    _heatmap(ax, np.asarray(matrix, dtype=np.float64), labels, ".2f", "Blues", vmin=min(0.0, np.min(matrix)), vmax=1.0)
    ax.set_title(f"{task}: members' correlation of predictions")
    return png(fig)
