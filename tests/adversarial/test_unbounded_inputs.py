"""Unbounded inputs: a grid whose product is huge is refused with its count before it is
expanded; a zip member's size is checked before it is read (a zip bomb); a FIFO given as an input
file is refused instead of hanging the command; a dead ``--address`` is an error naming the
connect timeout. Commands that could hang run in a subprocess with a timeout (a hang fails the
test, it never stalls the suite)."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import zipfile

import pytest

from ensemble.data import PACKAGE_SAMPLE as SAMPLE
from ensemble.errors import EnsembleError
from ensemble.leaderboard import votes
from ensemble.leaderboard.submission import list_submissions
from ensemble.scale.grid import MAX_CONFIGS, load_grid
from kill_helpers import REPO


def run_cli(*args, code: str | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="200")
    cmd = [sys.executable, *(("-c", code) if code else ("-m", "ensemble")), *map(str, args)]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("lists, count", [(6, 10 ** 12), (2, 100 * 101)])
def test_a_huge_grid_is_refused_with_its_count_before_expanding(tmp_path, lists, count):
    names = ["seed", "lr", "batch_size", "epochs", "smart_steps", "max_length"][:lists]
    rows = []
    for i, n in enumerate(names):
        k = 101 if (lists == 2 and i == 1) else 100
        start = 1 if n != "max_length" else 16
        vals = [f"{(j + 1) * 1e-5}" if n == "lr" else str(start + j) for j in range(k)]
        rows.append(f"{n} = [{', '.join(vals)}]")
    grid = tmp_path / "g.toml"
    grid.write_text('[defaults]\nbase = "minilm"\n[grid]\n' + "\n".join(rows) + "\n")
    with pytest.raises(EnsembleError) as e:
        load_grid(grid)
    assert f"makes {count:,} configurations; expected at most {MAX_CONFIGS:,}" in str(e.value)


def test_a_zip_bomb_manifest_is_listed_damaged_unread(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:   # 20 MB of valid JSON, ~20 KB zipped
        z.writestr("MANIFEST.json", json.dumps({"message": "a" * 20_000_000}))
    (subs / "bomb.zip").write_bytes(buf.getvalue())
    (row,) = list_submissions(subs)
    assert row["damaged"] and "member 'MANIFEST.json': 20,000,015 bytes, more than the 1,048,576 expected" in row["damaged"]


def test_a_leaderboard_zip_member_over_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(votes, "MEMBER_LIMIT", 1000)
    path = tmp_path / "sub.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("predictions/sst-dev-output.csv", "id,Predicted_Sentiment\n" + "x , 0\n" * 1000)
    with pytest.raises(EnsembleError, match="member 'predictions/sst-dev-output.csv': 6,023 bytes, more than the 1,000 expected"):
        votes.leaderboard_files(path)


@pytest.fixture
def fifo_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in SAMPLE.iterdir():
        (data / f.name).write_bytes(f.read_bytes())
    (data / "ids-sst-dev.csv").unlink()
    os.mkfifo(data / "ids-sst-dev.csv")
    return data


def test_a_fifo_as_a_course_file_is_refused_not_waited_on(fifo_data):
    r = run_cli(code="import sys; from ensemble.data import read_split; read_split(sys.argv[1], 'sst', 'dev')",
                *[fifo_data])
    assert r.returncode == 1 and "ids-sst-dev.csv: a FIFO (named pipe), not a regular file; refused" in r.stderr


def test_a_fifo_as_a_grid_or_leaderboard_file_is_refused(tmp_path):
    grid = tmp_path / "g.toml"
    os.mkfifo(grid)
    r = run_cli("run", "--dry-run", "--grid", grid, "--data", SAMPLE, "--registry", tmp_path / "reg")
    assert r.returncode == 1 and "a FIFO (named pipe), not a regular file" in " ".join(r.stderr.split()), r.stderr
    out = tmp_path / "preds"
    out.mkdir()
    os.mkfifo(out / "sst-dev-output.csv")
    r = run_cli("validate", out, "--data", SAMPLE)
    assert r.returncode == 1 and "a FIFO (named pipe), not a regular file" in " ".join(r.stderr.split()), r.stderr


def test_a_dead_ray_address_is_an_error_naming_the_timeout():
    with socket.socket() as s:   # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys; from ensemble.scale.driver import RayOptions, ray_session\n"
            "with ray_session(RayOptions(address=sys.argv[1])): pass")
    r = run_cli(f"127.0.0.1:{port}", code=code, timeout=120)
    assert r.returncode == 1
    assert f"--address 127.0.0.1:{port}: no Ray cluster reachable there" in r.stderr and "connect timeout 10 s" in r.stderr
