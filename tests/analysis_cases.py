"""A hand-made sst registry shared by the analysis and report tests: six dev rows, two imported
candidates whose numbers are worked out by hand below, and two run records.

gold            0   1   2   3   4   2
A (best single) 0   1   2   3   3   3     4/6 right
B               1   1   3   0   4   2     3/6 right
(A + B) / 2     1   1   2   3   4   2     5/6 right: fixes rows 4 and 5 (s5, s6), breaks row 0 (s1)

Greedy selection: A first (best own score), B joins (5/6 >= 4/6).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ensemble import workflow
from ensemble.predfile import write_predictions
from ensemble.registry.register import register_predictions
from ensemble.registry.store import Registry
from ensemble.registry.runs import write_run

IDS = ["s1", "s2", "s3", "s4", "s5", "s6"]
GOLD = [0, 1, 2, 3, 4, 2]
SENTENCES = ["Awful .", "Bad .", "So-so .", "Good .", "Superb !", "Meh ."]
A = np.array([[.6, .1, .1, .1, .1], [.1, .6, .1, .1, .1], [.1, .1, .6, .1, .1],
              [.1, .1, .1, .6, .1], [.1, .1, .1, .4, .3], [.1, .1, .1, .6, .1]])
B = np.array([[0., .9, 0., .05, .05], [.1, .6, .1, .1, .1], [.1, .1, .35, .45, 0.],
              [.5, 0., 0., .4, .1], [0., 0., 0., .1, .9], [0., 0., .9, .1, 0.]])


def sst_data(folder: Path) -> Path:
    """A course data folder holding only ``ids-sst-dev.csv`` with the six rows."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i}\t{cid}\t {s}\t{g}\n" for i, (cid, s, g) in enumerate(zip(IDS, SENTENCES, GOLD)))
    (folder / "ids-sst-dev.csv").write_text("\tid\tsentence\tsentiment\n" + rows)
    return folder


def sst_registry(tmp: Path, runs: bool = True) -> tuple[Registry, Path, dict[str, str]]:
    """The registry with A and B registered and the greedy ensemble saved as "g"; run records for
    two runs (lr, seed and architecture differ) when ``runs``. Returns (registry, data, name -> id)."""
    data = sst_data(tmp / "data")
    reg = Registry(tmp / "reg")
    ids = {}
    for name, values in (("A", A), ("B", B)):
        d = tmp / f"pred-{name}"
        d.mkdir()
        write_predictions(d / "sst-dev.csv", "sst", IDS[::-1], values[::-1])   # rows joined by id
        ids[name] = register_predictions(reg, d, name, data).id
    workflow.select(reg, data, ("sst",), mode="greedy", repeats=0, name="g")
    if runs:
        write_run(reg.root, run_record("r1", "multi-sst-s0", {"lr": 1e-5, "seed": 0, "architecture": "multi"},
                                       [0.5, 4 / 6], ids["A"]))
        write_run(reg.root, run_record("r2", "cerberus-2-sst-s1",
                                       {"lr": 3e-5, "seed": 1, "architecture": "cerberus", "task_layers": 2},
                                       [0.5, 0.4, 0.3], "gone"))
    return reg, data, ids


def run_record(run_id: str, name: str, config: dict, dev: list[float], kept: str) -> dict:
    """A complete run record (ensemble.registry.runs' format) with one dev score per epoch; the best epoch
    names candidate ``kept``."""
    best = int(np.argmax(dev))
    epochs = [{"epoch": e + 1, "train_loss": {"sst": 1.0}, "dev": {"sst": s}, "lr": config["lr"], "seconds": 1.0,
               "tokens": 10, "tokens_per_second": 10.0, "candidate": kept if e == best else None,
               "best_for": ["sst"] if e == best else []} for e, s in enumerate(dev)]
    cfg = {"smart_weight": 0.0, "layer_decay": 0.95, "task_layers": 0, **config}
    return {"run_id": run_id, "name": name, "fingerprint": run_id, "config": cfg, "data": {}, "device": "cpu",
            "precision": "fp32", "parameters": 1000, "status": "complete", "started": f"2026-01-0{run_id[-1]}T00:00:00",
            "finished": None, "epochs": epochs, "candidates": [kept]}
