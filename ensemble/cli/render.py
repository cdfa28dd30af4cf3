"""Everything the commands print: the two consoles, JSON, messages and the tables (laid out by
:mod:`.tables`, so that no number is ever cut)."""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from ..tasks import TASKS
from .listing import FIELDS, params
from .tables import Col, fit

PIPED_WIDTH = 200   # stdout that is no terminal (a pipe, a log) and no COLUMNS: wide enough for every table


CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")   # C0 (but tab and newline), DEL and C1


def visible(text: str) -> str:
    """``text`` with every terminal control character (ESC, BEL, CR, ... : what could move the
    cursor, retitle the window or recolour the terminal) shown as ``\\xNN``: a name or a field
    value prints as text, never as an escape sequence."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class Stdout(Console):
    """stdout (or stderr), rich's emoji codes off: COLUMNS when set, else the terminal's width, else (piped, a log) :data:`PIPED_WIDTH`.

    COLUMNS, FORCE_COLOR and TTY_COMPATIBLE are read at each print (rich reads them once, when
    the console is made, which would freeze whatever they were when this module was imported)."""

    def __init__(self, **kwargs: Any) -> None:
        self._forced = kwargs.get("force_terminal")
        kwargs.setdefault("emoji", False)   # a path holding ":smile:" prints as written
        super().__init__(**kwargs)
        self._fixed_width = kwargs.get("width")
        self._width = self._fixed_width

    @property
    def is_terminal(self) -> bool:
        if self._forced is not None:
            return self._forced
        tty_compatible = os.environ.get("TTY_COMPATIBLE", "")
        if tty_compatible in ("0", "1"):
            return tty_compatible == "1"
        if os.environ.get("FORCE_COLOR"):
            return True
        isatty = getattr(self.file, "isatty", None)
        return bool(isatty and isatty())

    def _size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        columns = os.environ.get("COLUMNS", "")
        if self._fixed_width is not None or self.is_terminal and not columns.isdigit():
            return size
        if columns.isdigit():
            return ConsoleDimensions(int(columns), size.height)
        return ConsoleDimensions(PIPED_WIDTH, size.height)

    size = property(_size, Console.size.fset)

    def render_str(self, text: str, **kwargs: Any):
        """Every string printed, markup or not, table cells included, passes here: its control
        characters are made :func:`visible` first (the styles rich adds are its own, after)."""
        return super().render_str(visible(text), **kwargs)


console = Stdout()
err = Stdout(stderr=True)


def print_json(obj: Any, **kwargs: Any) -> None:
    print(json.dumps(obj, indent=2, **kwargs))


def error(text: str) -> None:
    err.print(f"[bold red]error:[/] [red]{escape(text)}[/]", soft_wrap=True, highlight=False)


def problems(text: str) -> None:
    err.print(f"[red]{escape(text)}[/]", soft_wrap=True, highlight=False)


def note(text: str) -> None:
    err.print(f"[yellow]{escape(text)}[/]", soft_wrap=True)


def warn(text: str) -> None:
    err.print(f"[bold yellow]warning:[/] [yellow]{escape(text)}[/]", soft_wrap=True, highlight=False)


def sample_banner(sample: bool) -> None:
    if sample:
        err.print("[bold magenta]SAMPLE DATA:[/] [magenta]the packaged sample (not course data); scores mean nothing.[/]")


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def print_table(title: str, cols: list[Col], rows: list[list[str]], keep_all: bool = False, hint: str = "") -> None:
    """Print a table fitted to the console (see :func:`.tables.fit`), naming the columns it left out."""
    cols = [replace(c, header=visible(c.header)) for c in cols]   # names in titles, headers and cells: escapes shown
    rows = [[visible(v) if isinstance(v, str) else v for v in r] for r in rows]
    fitted = fit(visible(title), cols, rows, console.width, keep_all)
    if fitted.dropped:
        fitted.table.caption = (f"left out to fit {console.width} columns: {', '.join(fitted.dropped)}"
                                + (f" ({hint})" if hint else ""))
    console.print(fitted.table, crop=False)


# -- training ------------------------------------------------------------------------------------
def print_epochs(result, elapsed: float) -> None:
    """The training table; on a narrow terminal tokens/s, time, lr and the losses (last task first) drop."""
    cfg = result.config
    rows = [{**vars(e), "tokens_per_second": e.tokens / max(e.seconds, 1e-9)} for e in result.epochs]
    title = f"{cfg.run_name}  ({params(result.parameters)} parameters, {result.device}, {elapsed:.1f} s)"
    print_epoch_rows(title, list(cfg.tasks), rows, result.candidates)
    if getattr(result, "status", None) == "stopped":
        console.print(f"stopped early after epoch {rows[-1]['epoch']} of {cfg.epochs}: the mean dev score had not "
                      f"improved for {cfg.patience} epochs (--patience)")
    if getattr(result, "resumed_from", 0):
        console.print(f"resumed after epoch {result.resumed_from} (run {result.run_id})")
    console.print(f"registered: {', '.join(result.candidates) or 'none'}")


def print_epoch_rows(title: str, tasks: list[str], rows: list[dict[str, Any]], live) -> None:
    """Epochs as the run's record holds them (:mod:`ensemble.registry.runs`); a candidate not in ``live`` is
    marked superseded."""
    n = len(tasks)
    cols = [Col("epoch", True), *[Col(f"{t} loss", True, 3 + i) for i, t in enumerate(tasks)],
            *[Col(f"{t} dev {TASKS[t].metric[:3]}", True) for t in tasks],
            Col("lr", True, 3 + n), Col("time", True, 4 + n), Col("tokens/s", True, 5 + n), Col("candidate", drop=1)]
    table = []
    for e in rows:
        best = set(e.get("best_for") or [])
        devs = [f"[bold green]{e['dev'][t]:.4f}[/]" if t in best else f"{e['dev'][t]:.4f}" for t in tasks]
        cand = e.get("candidate")
        kept = cand if cand in live else (f"[dim]{cand} (superseded)[/]" if cand else "")
        table.append([str(e["epoch"]), *[f"{e['train_loss'][t]:.4f}" for t in tasks], *devs, f"{e.get('lr', 0):.3g}",
                      f"{e['seconds']:.1f}s", f"{e.get('tokens_per_second', 0):,.0f}", kept])
    print_table(title, cols, table)


def print_run_record(record: dict[str, Any], live) -> None:
    """``show RUN``: a run's record, its epoch table and its candidates."""
    tasks = list((record.get("config") or {}).get("tasks") or [])
    title = (f"run {record['run_id']}: {record.get('name')}  ({record.get('status')}, {params(record.get('parameters'))} "
             f"parameters, {record.get('device')}, {record.get('precision')})")
    print_epoch_rows(title, tasks, record.get("epochs") or [], live)
    console.print(f"started {record.get('started')}, finished {record.get('finished') or '-'}; "
                  f"candidates: {', '.join(record.get('candidates') or []) or 'none yet'}")


def print_fields(title: str, d: dict[str, Any]) -> None:
    rows = [[k, fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v, default=str)] for k, v in d.items()]
    print_table(title, [Col("field"), Col("value")], rows)


def print_run(result: dict[str, Any], out: Path) -> None:
    print_selection(result["selection"])
    console.print(f"[green]validated[/] {len(result['written'])} leaderboard files in {escape(str(out))}")
    for p in result["written"]:
        console.print(f"  {escape(str(p))}")
    console.print(f"[green]submission[/] {escape(str(result['submission']))}")
    console.print(f"finished in {result['seconds']:.0f} s")


# -- registry ------------------------------------------------------------------------------------
def candidate_row(c) -> dict[str, Any]:
    """A candidate as ``list --json`` prints it."""
    return {
        "id": c.id, "name": c.name, "kind": c.kind, "architecture": c.architecture,
        "tasks": c.tasks, "parameters": c.parameters,
        "dev": {t: c.dev_metric(t) for t in TASKS if c.dev_metric(t) is not None},
        "epoch": c.epoch, "created": c.created,
        "base": c.base, "base_provenance": c.base_provenance,
        **{k: FIELDS[f].value(c) for k, f in (("lr", "lr"), ("smart_weight", "smart"), ("layer_decay", "layer_decay"),
                                              ("seed", "seed"), ("task_layers", "task_layers"))},
    }


def print_candidates(cands: list, registry: Path, keys: list[str], keep_all: bool = False) -> None:
    """``list``'s table of the ``keys`` columns (see :data:`.listing.FIELDS`)."""
    if not cands:
        console.print(f"no candidates in {escape(str(registry))} yet: `ensemble train` or `ensemble register` adds some")
        return
    fields = [FIELDS[k] for k in keys]
    print_table(f"{len(cands)} candidates in {registry}", [Col(f.header, f.numeric, f.drop, f.floor) for f in fields],
                [[escape(f.show(f.value(c))) for f in fields] for c in cands], keep_all,
                hint="--no-truncate or --columns shows them")


def print_candidate(c) -> None:
    console.print(f"[bold]{c.id}[/]  {escape(str(c.name))}  ({escape(c.kind)}, "
                  f"{escape(str(c.architecture))}, {params(c.parameters)} parameters)")
    console.print(f"created {escape(str(c.created))}  at {escape(str(c.path))}")
    if c.model_config:
        console.print("model: " + json.dumps(c.model_config, sort_keys=True))
    if c.training:
        tr = dict(c.training)
        console.print("training: " + json.dumps(tr.pop("config", {}), sort_keys=True))
        console.print("run: " + json.dumps(tr, sort_keys=True))
    rows = [[r.task, r.split, fmt(c.metric(r.task, r.split)), str(r.rows), r.data_file or "-",
             (r.data_sha256 or "-")[:16]] for r in c.prediction_records()]
    print_table("dev metrics and cached predictions", [Col("task"), Col("split"), Col("metric", True), Col("rows", True),
                                                       Col("data file"), Col("data sha256", drop=1)], rows)
    files = [[rel, f"{info.size:,}", info.sha256] for rel, info in sorted(c.files.items())]
    print_table("files", [Col("file"), Col("size", True), Col("sha256")], files)


def print_compare(cands: list, fields: list[dict[str, Any]]) -> None:
    """``compare``: one column per candidate; rows whose values differ are bold and marked ``*``."""
    cols = [Col("*"), Col("field"), *[Col(c.id) for c in cands]]
    rows = []
    for f in fields:
        row = ["*" if f["differs"] else "", escape(f["field"]), *[escape(x) for x in f["shown"]]]
        rows.append([f"[bold]{x}[/]" if x else x for x in row] if f["differs"] else row)
    print_table(f"{len(cands)} candidates compared (* marks the rows that differ)", cols, rows)


def print_verify(checked: list, found: list) -> None:
    for p in found:
        problems(str(p))
    n_files = sum(len(c.files) for c in checked)
    colour = "red" if found else "green"
    console.print(f"[{colour}]{len(checked)} candidates, {n_files} files checked: {len(found)} problems[/]")


def print_registered(c) -> None:
    dev = ", ".join(f"{t} {c.dev_metric(t):.4f}" for t in TASKS if c.dev_metric(t) is not None)
    console.print(f"registered [bold]{c.id}[/] ({escape(str(c.name))}): dev {dev}")


def print_refreshed(done: list) -> None:
    for c, stale in done:
        console.print(f"refreshed {c.id} ({escape(str(c.name))}): {escape('; '.join(stale) or 'forced')}")
    if not done:
        console.print("no stale candidates")


# -- selection and leaderboard files -------------------------------------------------------------
def print_selection(report, verbose: bool = False) -> None:
    """Each task's trajectory, then the summary (params, then the held-out estimate drop first)."""
    for text in report.notes:
        note(text)
    for task, sel in report.tasks.items():
        print_trajectory(task, report.mode, sel, verbose)
    tasks = list(report.tasks)
    cols = [Col("system"), Col("params", True, 2), *[Col(f"{t} dev", True) for t in tasks], Col("mean dev", True),
            Col("mean held-out est.", True, 1)]
    rows = [[escape(row["system"]), params(row["parameters"]), *[fmt(row["dev"].get(t)) for t in tasks],
             fmt(row["mean_dev"]), fmt(row.get("mean_heldout"))] for row in report.summary]
    print_table("summary" + (" (SAMPLE DATA)" if report.sample else ""), cols, rows)
    if report.path:
        console.print(f"saved ensemble [bold]{escape(report.name)}[/] to {escape(str(report.path))}")


def _kept_steps(mode: str, steps: list[dict[str, Any]], verbose: bool) -> tuple[list[dict[str, Any]], int]:
    """caruana: the kept prefix (every step under ``verbose``) and how many steps are not shown."""
    if mode != "caruana" or verbose:
        return steps, 0
    kept = [s for s in steps if s.get("accepted")]
    return kept, len(steps) - len(kept)


def print_trajectory(task: str, mode: str, sel: dict[str, Any], verbose: bool = False) -> None:
    """One task's selection steps, then its gain in sample, held out and on labelled test data,
    and whether the ensemble is expected to beat the best single candidate, in words."""
    steps, hidden = _kept_steps(mode, sel["trajectory"], verbose)
    cols = [Col("step", True), Col("candidate"), Col("own dev", True, 1), Col("ensemble dev", True),
            Col("change", True), Col(""), Col("why", drop=2)]
    rows = [[str(s.get("step")), escape(str(s.get("candidate"))) + (" [dim](vote)[/]" if s.get("vote") else ""),
             fmt(s.get("own_score")), fmt(s.get("ensemble_score")),
             (f"{s['change']:+.4f}" if s.get("change") is not None else "-"),
             "[green]added[/]" if s.get("accepted") else "[dim]rejected[/]", escape(str(s.get("reason", "")))]
            for s in steps]
    print_table(f"{task}: {mode} selection ({TASKS[task].metric} on dev)", cols, rows)
    if hidden:
        console.print(f"  {task}: {hidden} later steps not kept (they do not reach the best dev score); "
                      "--verbose or --json shows them", highlight=False)
    n = len(sel["weights"])
    line = (f"  {task}: {n} member{'s' if n != 1 else ''}, dev {sel['ensemble_dev_score']:.4f}; gain over the best "
            f"single candidate: in-sample {sel['in_sample_gain']:+.4f}")
    held = sel.get("heldout") or {}
    if held.get("estimate") is not None:
        line += (f", held-out {held['estimate']:+.4f} \\[{held['level']:.0%} interval {held['low']:+.4f}, "
                 f"{held['high']:+.4f}] ({held['folds']}-fold x {held['repeats']} cross-fit, corrected t)")
    console.print(line, highlight=False)
    if sel.get("verdict"):
        style = "green" if sel.get("expected_to_beat_single") else "yellow"
        console.print(f"  {task}: [{style}]{escape(sel['verdict'])}[/]"
                      + ("; the best single candidate is saved for it" if sel.get("system") == "best single" else ""),
                      highlight=False)
    if sel.get("test"):
        console.print(f"  {task}: labelled test data (never used for selection): ensemble "
                      f"{sel['test']['ensemble']:.4f}, best single candidate {sel['test']['best_single']:.4f}",
                      highlight=False)


def print_predicted(result: dict[str, Any]) -> None:
    for text in result.get("notes", []):
        note(text)
    for p in result["written"]:
        console.print(f"wrote {escape(str(p))}")
    if result.get("dev_scores"):
        vals = list(result["dev_scores"].values())
        print_table(f"dev scores of {result['ensemble']} (from the rounded files)",
                    [Col(k, True) for k in [*result["dev_scores"], "mean"]],
                    [[*[f"{v:.4f}" for v in vals], f"{sum(vals) / len(vals):.4f}"]])
    if "score" in result:
        console.print(f"score on the labelled input: {result['score']:.4f}")


def print_validated(found: list, text: str, pred_dir: Path, data_dir: Path) -> None:
    """``validate``'s verdict: ``text`` is the formatted list of problems (empty when valid)."""
    if found:
        problems(text)
        err.print(f"[bold red]{len(found)} problems in {escape(str(pred_dir))}[/]")
    else:
        console.print(f"[green]{escape(str(pred_dir))}: all six leaderboard files are valid against "
                      f"{escape(str(data_dir))}[/]")


# -- bench ---------------------------------------------------------------------------------------
def print_bench_select(result: dict[str, Any], candidates: int, rows: int) -> None:
    cols = [Col("task/mode"), Col("members", True, 1), Col("fast (s)", True), Col("plain re-averaging (s)", True),
            Col("speed-up", True), Col("same ensemble", drop=2), Col("note", drop=3)]
    table = []
    for key, r in result["results"].items():
        prefix = r.get("plain_on_prefix")
        table.append([key, str(r.get("ensemble_size")), f"{r['fast_s']:.3f}", f"{r['plain_s']:.3f}",
                      f"{r['speedup']:.1f}x", str(r.get("identical")),
                      "" if not prefix else f"both timed on a prefix: {prefix}"])
    print_table(f"selection on synthetic predictions: {candidates} candidates x {rows} rows "
                f"({result.get('cpu_count')} CPUs, load {result.get('load_avg_1min')})", cols, table)
    console.print(f"fast greedy, all tasks: {result['fast_greedy_total_s']:.3f} s "
                  f"(target under 1 s: {'met' if result.get('target_met') else 'NOT met'})")


def print_flat(title: str, d: dict[str, Any]) -> None:
    rows: list[list[str]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            rows.append([escape(prefix), escape(fmt(v) if isinstance(v, float) else str(v))])
    walk("", d)
    print_table(title, [Col("measure"), Col("value")], rows)


def print_bench(result: dict[str, Any]) -> None:
    rows = result.get("rows")
    if isinstance(rows, list) and rows:
        keys = list(rows[0].keys())
        numeric = {k for k in keys if all(isinstance(r.get(k), (int, float, type(None))) for r in rows)
                   and any(isinstance(r.get(k), (int, float)) for r in rows)}
        cells = [[_bench_cell(r.get(k)) for k in keys] for r in rows]
        # headers split at words (wall seconds), so a narrow column wraps between words, never inside one
        print_table(result.get("title", "benchmark"), [Col(k.replace("_", " "), k in numeric) for k in keys], cells)
        rest = {k: v for k, v in result.items() if k not in ("rows", "title", "targets")}
        if rest:
            print_flat("details", rest)
    else:
        print_flat(result.get("title", "benchmark"), {k: v for k, v in result.items() if k != "targets"})
    if result.get("targets"):
        print_targets(result["targets"])


def _bench_cell(v: Any) -> str:
    """A bench value as a cell: floats to 3 decimals, nothing as '-', a list joined (empty: '-')."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return escape(", ".join(map(str, v))) or "-"
    return escape(fmt(v, 3))   # fmt: None as '-', floats to 3 decimals


def print_targets(targets: dict[str, Any]) -> None:
    rows = []
    for name, x in targets.items():
        met = x.get("met")
        rows.append([escape(name), f"{x['value']:.4g}" if isinstance(x["value"], float) else str(x["value"]),
                     escape(str(x["target"])), "-" if met is None else ("[green]met[/]" if met else "[red]NOT met[/]")])
    print_table("targets", [Col("measure"), Col("value", True), Col("target"), Col("met")], rows)
