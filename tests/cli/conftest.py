"""Fixtures of the CLI tests: ``invoke`` (the app through typer's CliRunner), ``fake_predictions``
(prediction files for the packaged sample), ``registry_with_imports`` (three imported candidates)
and ``mixed_registry`` (two trained runs that differ in lr, seed and architecture, and one import:
shared by the session, so copy it before changing it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.data import read_split
from ensemble.predfile import write_predictions


# Output as a pipe or a log gets it, whatever the environment of the test run: no COLUMNS/LINES
# (some test runners set them), no forced terminal.
PIPED_ENV = {"COLUMNS": None, "LINES": None, "TTY_COMPATIBLE": None, "FORCE_COLOR": None}


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], env=PIPED_ENV, catch_exceptions=False)


def _fake_predictions(folder: Path, quality: dict[str, float], seed: int, shuffle: bool = True) -> Path:
    """Prediction files for the sample's dev and test ids: the truth blended with noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for task, q in quality.items():
        for split in ("dev", "test"):
            sp = read_split(SAMPLE, task, split)
            n = len(sp)
            order = rng.permutation(n) if shuffle else np.arange(n)
            if task == "sst":
                onehot = np.eye(5)[sp.labels] if sp.labelled else rng.dirichlet(np.ones(5), n)
                v = q * onehot + (1 - q) * rng.dirichlet(np.ones(5), n)
            elif task == "para":
                y = sp.labels.astype(float) if sp.labelled else rng.random(n)
                v = (q * y + (1 - q) * rng.random(n))[:, None]
            else:
                y = sp.labels if sp.labelled else rng.random(n) * 5
                v = (q * y + (1 - q) * rng.random(n) * 5)[:, None]
            write_predictions(folder / f"{task}-{split}.csv", task, [sp.ids[i] for i in order], v[order])
    return folder


@pytest.fixture
def invoke():
    """``invoke(*args)``: run ``ensemble ARGS`` (arguments str()-ed), exceptions not caught."""
    return _invoke


@pytest.fixture
def fake_predictions():
    return _fake_predictions


@pytest.fixture
def registry_with_imports(tmp_path):
    reg = tmp_path / "reg"
    for i, q in enumerate((0.6, 0.5, 0.4)):
        d = _fake_predictions(tmp_path / f"p{i}", {"sst": q, "para": q, "sts": q}, seed=i)
        r = _invoke("register", "--predictions", d, "--name", f"ext{i}", "--data", SAMPLE, "--registry", reg)
        assert r.exit_code == 0, r.output
    return reg


@pytest.fixture(scope="session")
def mixed_registry(tmp_path_factory, tiny_base_dir) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    reg = root / "reg"
    for extra in (("--architecture", "cerberus", "--task-layers", "1", "--lr", "3e-5", "--seed", "1"),
                  ("--smart-weight", "1", "--seed", "0", "--tasks", "sst,sts")):
        r = _invoke("train", "--data", SAMPLE, "--base", tiny_base_dir, "--epochs", "1", "--registry", reg,
                    "--json", *extra)
        assert r.exit_code == 0, r.output
    d = _fake_predictions(root / "p", {"sst": 0.6, "para": 0.6, "sts": 0.6}, seed=0)
    r = _invoke("register", "--predictions", d, "--name", "starter-predictions-imported-from-another-machine",
                "--data", SAMPLE, "--registry", reg)
    assert r.exit_code == 0, r.output
    return reg
