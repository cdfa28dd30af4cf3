"""Rendering: the error line is red and escapes rich markup; no table ever cuts a number, at 80
columns, on a terminal or piped (list, the training table, the select summary)."""
from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

from rich.console import Console
from typer.testing import CliRunner

from ensemble.cli import app, render
from ensemble.cli import bench as bench_cli
from ensemble.data import PACKAGE_SAMPLE as SAMPLE

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def shown(args: list, columns: int | None, terminal: bool = False) -> str:
    """``ensemble ARGS`` at ``columns`` (None: piped, COLUMNS unset), escape codes stripped."""
    env = {"COLUMNS": str(columns) if columns else None, "TTY_COMPATIBLE": "1" if terminal else None,
           "FORCE_COLOR": None}
    r = CliRunner().invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return ANSI.sub("", r.stdout)


def assert_fits(text: str, columns: int) -> None:
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= columns


def test_error_is_bold_red_and_shows_brackets_literally(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(render, "err", Console(file=out, force_terminal=True, color_system="standard", width=200))
    render.error("bad [bold]value[/]")
    text = out.getvalue()
    assert "\x1b[1;31merror:" in text and "\x1b[31mbad [bold]value[/]" in text


def test_fmt():
    assert render.fmt(None) == "-" and render.fmt(0.123456) == "0.1235" and render.fmt(0.5, 3) == "0.500"
    assert render.fmt(3) == "3"


def test_list_prints_every_number_whole_at_80_columns_and_piped(mixed_registry):
    rows = json.loads(shown(["list", "--registry", mixed_registry, "--json"], None))
    devs = [f"{v:.4f}" for r in rows for v in r["dev"].values()]
    lrs = [f"{r['lr']:g}" for r in rows if r["lr"] is not None]
    for terminal in (False, True):
        text = shown(["list", "--registry", mixed_registry], 80, terminal)
        assert_fits(text, 80)
        assert all(d in text for d in devs + lrs) and all(r["id"] in text for r in rows)
        assert "left out to fit 80 columns: " in text
    piped = shown(["list", "--registry", mixed_registry], None)
    assert_fits(piped, render.PIPED_WIDTH)
    assert "left out" not in piped and "created" in piped and "3e-05" in piped
    assert all(d in piped for d in devs + lrs + [f"{r['parameters']:,}" for r in rows if r["parameters"]])
    names = shown(["list", "--registry", mixed_registry, "--columns", "id,name,sst"], None)
    assert all(r["name"] in names for r in rows)


def test_no_truncate_keeps_every_column(mixed_registry):
    text = shown(["list", "--registry", mixed_registry, "--no-truncate", "--columns", "all"], 80)
    assert "left out" not in text and "…" not in text
    for header in ("layer", "decay", "task", "layers", "created", "base"):
        assert header in text


def epochs_result(tasks=("sst", "para", "sts")) -> SimpleNamespace:
    """What ``print_epochs`` reads of a TrainResult (ensemble.training.finetune, which imports torch)."""
    epochs = [SimpleNamespace(epoch=e, train_loss={t: 1.5712345 + e + i for i, t in enumerate(tasks)},
                              dev={t: -0.2158 + 0.1 * e * (i + 1) for i, t in enumerate(tasks)}, seconds=12.25 * e,
                              tokens=123_456_789 * e, candidate=f"cand{e:06d}", best_for=["sst"] if e == 2 else [])
              for e in (1, 2, 10)]
    cfg = SimpleNamespace(run_name="cerberus-1-sst+para+sts-smart10-s0", tasks=tasks)
    return SimpleNamespace(config=cfg, parameters=110_000_000, device="cuda:0", epochs=epochs,
                           candidates=["cand000002", "cand000010"])


def test_training_table_prints_every_number_whole(monkeypatch, capsys):
    result = epochs_result()
    numbers = [f"{x:.4f}" for e in result.epochs for d in (e.train_loss, e.dev) for x in d.values()]
    monkeypatch.setenv("COLUMNS", "80")
    render.print_epochs(result, 61.0)
    narrow = capsys.readouterr().out
    assert_fits(narrow, 80)
    kept = [n for n in numbers if n in narrow]
    assert all(f"{e.dev[t]:.4f}" in narrow for e in result.epochs for t in e.dev)
    assert "left out to fit 80 columns: sts loss, lr, time, tokens/s" in narrow and len(kept) >= 15
    monkeypatch.delenv("COLUMNS")
    render.print_epochs(result, 61.0)
    piped = capsys.readouterr().out
    assert_fits(piped, render.PIPED_WIDTH)
    speeds = [f"{e.tokens / e.seconds:,.0f}" for e in result.epochs]
    assert all(n in piped for n in numbers + speeds + ["122.5s", "cand000001 (superseded)"]), piped


def test_select_summary_prints_every_number_whole(registry_with_imports):
    args = ["select", "--data", SAMPLE, "--registry", registry_with_imports, "--repeats", "3"]
    report = json.loads(shown([*args, "--json"], None))
    numbers = [f"{v:.4f}" for row in report["summary"] for v in (*row["dev"].values(), row["mean_dev"])]
    numbers += [f"{s['own_score']:.4f}" for sel in report["tasks"].values() for s in sel["trajectory"]]
    for columns in (80, None):
        text = shown(args, columns)
        assert_fits(text, columns or render.PIPED_WIDTH)
        assert all(n in text for n in numbers)
        assert all(row["system"].split()[0] in text for row in report["summary"])


def test_bench_rows_show_nothing_as_a_dash_and_headers_by_words(monkeypatch):
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    monkeypatch.setattr(render, "console", console)
    monkeypatch.setattr(bench_cli, "console", console)
    bench_cli.print_bench({"title": "bench", "rows": [
        {"system": "local engine", "wall_seconds": 37.911, "failed": None, "same_as_local": True},
        {"system": "Ray, 2 workers", "wall_seconds": 19.281, "failed": [], "same_as_local": False}]})
    text = out.getvalue()
    assert "wall_seconds" not in text and "None" not in text and "[]" not in text
    header = [line for line in text.splitlines() if line.startswith("┃")]
    assert any("wall" in h for h in header) and any("seconds" in h for h in header)   # wrapped between words
    local, ray = [line for line in text.splitlines() if "local engine" in line or "Ray, 2" in line]
    assert [c.strip() for c in local.split("│")[2:5]] == ["37.911", "-", "yes"]
    assert [c.strip() for c in ray.split("│")[2:5]] == ["19.281", "-", "no"]
