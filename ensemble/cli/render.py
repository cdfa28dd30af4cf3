"""Everything the commands print: the two consoles, JSON, messages and the rich tables."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..tasks import TASKS

console = Console()
err = Console(stderr=True)


def print_json(obj: Any, **kwargs: Any) -> None:
    print(json.dumps(obj, indent=2, **kwargs))


def error(text: str) -> None:
    err.print(f"[bold red]error:[/] [red]{escape(text)}[/]", soft_wrap=True, highlight=False)


def problems(text: str) -> None:
    err.print(f"[red]{escape(text)}[/]", soft_wrap=True, highlight=False)


def note(text: str) -> None:
    err.print(f"[yellow]{escape(text)}[/]", soft_wrap=True)


def sample_banner(sample: bool) -> None:
    if sample:
        err.print("[bold magenta]SAMPLE DATA:[/] [magenta]the packaged sample (not course data); scores mean nothing.[/]")


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def params(n: Any) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


def columns(table: Table, names: tuple[str, ...] | list[str], left: tuple[str, ...]) -> None:
    """Add the named columns: those in ``left`` left-justified, the others right-justified."""
    for name in names:
        table.add_column(name, justify="left" if name in left else "right")


# -- training ------------------------------------------------------------------------------------
def print_epochs(result, elapsed: float) -> None:
    cfg = result.config
    table = Table(title=f"{cfg.run_name}  ({params(result.parameters)} parameters, {result.device}, {elapsed:.1f} s)")
    table.add_column("epoch", justify="right")
    for t in cfg.tasks:
        table.add_column(f"{t} loss", justify="right")
    for t in cfg.tasks:
        table.add_column(f"{t} dev {TASKS[t].metric[:3]}", justify="right")
    table.add_column("time", justify="right")
    table.add_column("tokens/s", justify="right")
    table.add_column("candidate")
    for e in result.epochs:
        best = set(e.best_for)
        devs = [f"[bold green]{e.dev[t]:.4f}[/]" if t in best else f"{e.dev[t]:.4f}" for t in cfg.tasks]
        kept = e.candidate if e.candidate in result.candidates else (f"[dim]{e.candidate} (superseded)[/]" if e.candidate else "")
        table.add_row(str(e.epoch), *[f"{e.train_loss[t]:.4f}" for t in cfg.tasks], *devs, f"{e.seconds:.1f}s",
                      f"{e.tokens / max(e.seconds, 1e-9):,.0f}", kept)
    console.print(table)
    console.print(f"registered: {', '.join(result.candidates) or 'none'}")


def print_fields(title: str, d: dict[str, Any]) -> None:
    t = Table(title=title)
    t.add_column("field")
    t.add_column("value")
    for k, v in d.items():
        t.add_row(k, fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v, default=str)[:120])
    console.print(t)


def print_run(result: dict[str, Any], out: Path) -> None:
    print_selection(result["selection"])
    console.print(f"[green]validated[/] {len(result['written'])} leaderboard files in {out}")
    for p in result["written"]:
        console.print(f"  {p}")
    console.print(f"[green]submission[/] {result['submission']}")
    console.print(f"finished in {result['seconds']:.0f} s")


# -- registry ------------------------------------------------------------------------------------
def candidate_row(c) -> dict[str, Any]:
    """A candidate as ``list --json`` prints it."""
    return {
        "id": c.id, "name": c.name, "kind": c.kind, "architecture": c.manifest.get("architecture"),
        "tasks": c.tasks, "parameters": c.manifest.get("parameters"),
        "dev": {t: c.dev_metric(t) for t in TASKS if c.dev_metric(t) is not None},
        "epoch": (c.manifest.get("training") or {}).get("epoch"), "created": c.manifest.get("created"),
        "base": (c.manifest.get("model") or {}).get("base"),
        "base_provenance": (c.manifest.get("training") or {}).get("base_provenance"),
    }


def print_candidates(cands: list, registry: Path) -> None:
    if not cands:
        console.print(f"no candidates in {registry} yet: `ensemble train` or `ensemble register` adds some")
        return
    table = Table(title=f"{len(cands)} candidates in {registry}")
    for col in ("id", "name", "architecture", "tasks", "params", *(f"{t} dev" for t in TASKS), "epoch", "base", "created"):
        table.add_column(col, justify="right" if col in ("params", "epoch") or col.endswith("dev") else "left",
                         no_wrap=col in ("id", "created"), min_width=10 if col == "id" else None)
    for c in cands:
        tr = c.manifest.get("training") or {}
        prov = tr.get("base_provenance")
        base = (c.manifest.get("model") or {}).get("base") or "-"
        if prov:
            base += f" (+MLM {prov.get('steps', '?')} steps)"
        table.add_row(c.id, c.name, c.manifest.get("architecture", "-"), ",".join(c.tasks),
                      params(c.manifest.get("parameters")), *[fmt(c.dev_metric(t)) for t in TASKS],
                      fmt(tr.get("epoch")), base, (c.manifest.get("created") or "")[:16].replace("T", " "))
    console.print(table)


def print_candidate(c) -> None:
    m = c.manifest
    console.print(f"[bold]{c.id}[/]  {c.name}  ({m.get('kind')}, {m.get('architecture')}, {params(m.get('parameters'))} parameters)")
    console.print(f"created {m.get('created')}  at {c.path}")
    if m.get("model"):
        console.print("model: " + json.dumps(m["model"], sort_keys=True))
    if m.get("training"):
        tr = dict(m["training"])
        console.print("training: " + json.dumps(tr.pop("config", {}), sort_keys=True))
        console.print("run: " + json.dumps(tr, sort_keys=True))
    t = Table(title="dev metrics and cached predictions")
    for col in ("task", "split", "metric", "rows", "data file", "data sha256"):
        t.add_column(col)
    for task, splits in m.get("predictions", {}).items():
        for split, e in splits.items():
            t.add_row(task, split, fmt(m.get("metrics", {}).get(task, {}).get(split)), str(e.get("rows")),
                      e.get("data_file", "-"), (e.get("data_sha256") or "-")[:16])
    console.print(t)
    f = Table(title="files")
    f.add_column("file")
    f.add_column("size", justify="right")
    f.add_column("sha256")
    for rel, info in sorted(m.get("files", {}).items()):
        f.add_row(rel, f"{info['size']:,}", info["sha256"])
    console.print(f)


def print_verify(checked: list, found: list) -> None:
    for p in found:
        problems(str(p))
    n_files = sum(len(c.manifest.get("files", {})) for c in checked)
    colour = "red" if found else "green"
    console.print(f"[{colour}]{len(checked)} candidates, {n_files} files checked: {len(found)} problems[/]")


def print_registered(c) -> None:
    dev = ", ".join(f"{t} {c.dev_metric(t):.4f}" for t in TASKS if c.dev_metric(t) is not None)
    console.print(f"registered [bold]{c.id}[/] ({c.name}): dev {dev}")


def print_refreshed(done: list) -> None:
    for c, stale in done:
        console.print(f"refreshed {c.id} ({c.name}): {'; '.join(stale) or 'forced'}")
    if not done:
        console.print("no stale candidates")


# -- selection and leaderboard files -------------------------------------------------------------
def print_selection(report) -> None:
    for text in report.notes:
        note(text)
    for task, sel in report.tasks.items():
        print_trajectory(task, report.mode, sel)
    s = Table(title="summary" + (" (SAMPLE DATA)" if report.sample else ""))
    tasks = list(report.tasks)
    columns(s, ("system", "params", *[f"{t} dev" for t in tasks], "mean dev", "mean held-out est."), left=("system",))
    for row in report.summary:
        s.add_row(row["system"], params(row["parameters"]), *[fmt(row["dev"].get(t)) for t in tasks],
                  fmt(row["mean_dev"]), fmt(row.get("mean_heldout")))
    console.print(s)
    if report.path:
        console.print(f"saved ensemble [bold]{report.name}[/] to {report.path}")


def print_trajectory(task: str, mode: str, sel: dict[str, Any]) -> None:
    """One task's selection steps, then its gain in sample, held out and on labelled test data."""
    t = Table(title=f"{task}: {mode} selection ({TASKS[task].metric} on dev)")
    columns(t, ("step", "candidate", "own dev", "ensemble dev", "change", "", "why"), left=("candidate", "", "why"))
    for s in sel["trajectory"]:
        ok = s.get("accepted")
        t.add_row(str(s.get("step")), str(s.get("candidate")), fmt(s.get("own_score")), fmt(s.get("ensemble_score")),
                  (f"{s['change']:+.4f}" if s.get("change") is not None else "-"),
                  "[green]added[/]" if ok else "[dim]rejected[/]", str(s.get("reason", "")))
    console.print(t)
    line = (f"  {task}: {len(sel['weights'])} members, dev {sel['ensemble_dev_score']:.4f}; gain over the best "
            f"single candidate: in-sample {sel['in_sample_gain']:+.4f}")
    if sel.get("heldout_gain_mean") is not None:
        lo, hi = sel["heldout_gain_ci"]
        line += f", held-out (cross-fit) {sel['heldout_gain_mean']:+.4f} \\[95% CI {lo:+.4f}, {hi:+.4f}]"
    else:
        line += ", held-out: not estimated (too few dev rows or --repeats 0)"
    console.print(line, highlight=False)
    if sel.get("test"):
        console.print(f"  {task}: labelled test data (never used for selection): ensemble "
                      f"{sel['test']['ensemble']:.4f}, best single candidate {sel['test']['best_single']:.4f}",
                      highlight=False)


def print_predicted(result: dict[str, Any]) -> None:
    for text in result.get("notes", []):
        note(text)
    for p in result["written"]:
        console.print(f"wrote {p}")
    if result.get("dev_scores"):
        t = Table(title=f"dev scores of {result['ensemble']} (from the rounded files)")
        for k in result["dev_scores"]:
            t.add_column(k, justify="right")
        t.add_column("mean", justify="right")
        vals = list(result["dev_scores"].values())
        t.add_row(*[f"{v:.4f}" for v in vals], f"{sum(vals) / len(vals):.4f}")
        console.print(t)
    if "score" in result:
        console.print(f"score on the labelled input: {result['score']:.4f}")


def print_validated(found: list, text: str, pred_dir: Path, data_dir: Path) -> None:
    """``validate``'s verdict: ``text`` is the formatted list of problems (empty when valid)."""
    if found:
        problems(text)
        err.print(f"[bold red]{len(found)} problems in {pred_dir}[/]")
    else:
        console.print(f"[green]{pred_dir}: all six leaderboard files are valid against {data_dir}[/]")


# -- bench ---------------------------------------------------------------------------------------
def print_bench_select(result: dict[str, Any], candidates: int, rows: int) -> None:
    t = Table(title=f"selection on synthetic predictions: {candidates} candidates x {rows} rows "
                    f"({result.get('cpu_count')} CPUs, load {result.get('load_avg_1min')})")
    columns(t, ("task/mode", "members", "fast (s)", "plain re-averaging (s)", "speed-up", "same ensemble", "note"),
            left=("task/mode", "note"))
    for key, r in result["results"].items():
        prefix = r.get("plain_on_prefix")
        t.add_row(key, str(r.get("ensemble_size")), f"{r['fast_s']:.3f}", f"{r['plain_s']:.3f}", f"{r['speedup']:.1f}x",
                  str(r.get("identical")), "" if not prefix else f"both timed on a prefix: {prefix}")
    console.print(t)
    console.print(f"fast greedy, all tasks: {result['fast_greedy_total_s']:.3f} s "
                  f"(target under 1 s: {'met' if result.get('target_met') else 'NOT met'})")


def print_flat(title: str, d: dict[str, Any]) -> None:
    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            t.add_row(prefix, fmt(v) if isinstance(v, float) else str(v))
    walk("", d)
    console.print(t)


def print_bench(result: dict[str, Any]) -> None:
    rows = result.get("rows")
    if isinstance(rows, list) and rows:
        cols = list(rows[0].keys())
        t = Table(title=result.get("title", "benchmark"))
        columns(t, cols, left=("system", "name", "input"))
        for r in rows:
            t.add_row(*[fmt(r.get(c), 3) if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in cols])
        console.print(t)
        rest = {k: v for k, v in result.items() if k not in ("rows", "title", "targets")}
        if rest:
            print_flat("details", rest)
    else:
        print_flat(result.get("title", "benchmark"), {k: v for k, v in result.items() if k != "targets"})
    if result.get("targets"):
        print_targets(result["targets"])


def print_targets(targets: dict[str, Any]) -> None:
    t = Table(title="targets")
    columns(t, ("measure", "value", "target", "met"), left=("measure",))
    for name, x in targets.items():
        met = x.get("met")
        t.add_row(name, f"{x['value']:.4g}" if isinstance(x["value"], float) else str(x["value"]), x["target"],
                  "-" if met is None else ("[green]met[/]" if met else "[red]NOT met[/]"))
    console.print(t)
