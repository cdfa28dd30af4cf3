"""``ensemble run``: a grid file or a preset, trained here or on Ray, then select, write, validate and zip.

On Ray the runs are shown as they go: one live table of the runs on a terminal (queued, running on
which node at which epoch, done with its best dev scores, failed), and one permanent line per
finished epoch and per run's start and end, in a terminal as in a pipe or log.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.live import Live
from rich.markup import escape

from ..errors import EnsembleError
from ..selection import DEFAULT_MODE
from ..tasks import TASKS
from .options import DataOpt, DeviceOpt, JsonOpt, Preset, RegistryOpt, SelectMode, System, choice, plain
from .progress import RichProgress
from .render import console, err, error, print_epochs, print_json, print_table
from .select import print_selection
from .tables import Col, fit

Engine = choice("Engine", ("local", "ray"))
RAY = "Ray engine (--engine ray)"
STATUS_STYLE = {"queued": "dim", "running": "cyan", "done": "green", "failed": "red", "skipped": "dim"}


def _maybe(member) -> str | None:
    return None if member is None else member.value


def _dev(row: dict[str, Any]) -> str:
    return "  ".join(f"{t} {v:.4f}" for t, v in row["best_dev"].items())


def _state(row: dict[str, Any]) -> str:
    s = row["status"]
    if s == "running":
        s = f"running on {row['node']}, epoch {row['epoch']}/{row['epochs']}"
        s += f" (attempt {row['attempts']})" if row["attempts"] > 1 else ""
    elif s == "failed":
        s = f"failed: {row['error']}"
    return f"[{STATUS_STYLE[row['status']]}]{escape(s)}[/]"


class GridView:
    """The Ray engine's events on stderr: permanent lines always, a live table on a terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None

    def _table(self):
        cols = [Col("run"), Col("state"), Col("best dev", drop=1)]
        rows = [[r["name"], _state(r), _dev(r)] for r in self.rows.values()]
        return fit("grid", cols, rows, err.width, False).table

    def _line(self, text: str) -> None:
        (self.live.console if self.live else err).print(text, soft_wrap=True, highlight=False)

    def __call__(self, kind: str, row: dict[str, Any], entry: dict[str, Any] | None) -> None:
        if self.quiet:
            return
        self.rows[row["fingerprint"]] = row
        if self.live is None and err.is_terminal:
            self.live = Live(self._table(), console=err, refresh_per_second=4, transient=True)
            self.live.start()
        name = escape(row["name"])
        if kind == "epoch":
            dev = "  ".join(f"{t} dev {TASKS[t].metric[:3]} {v:.4f}" for t, v in entry["dev"].items())
            self._line(f"{name}: epoch {entry['epoch']}/{row['epochs']} on {row['node']}  {dev}  "
                       f"{entry['seconds']:.1f}s" + (f"  kept {entry['candidate']}" if entry.get("candidate") else ""))
        elif kind in ("start", "retry"):
            again = f" (attempt {row['attempts']}: its worker or node died)" if kind == "retry" else ""
            self._line(f"{name}: started on {row['node']}{again}")
        elif kind == "done":
            self._line(f"[green]{name}: done[/], registered {', '.join(row['candidates'])}; best dev {_dev(row)}")
        elif kind == "failed":
            self._line(f"[red]{name}: failed: {escape(row['error'])}[/]")
        if self.live is not None:
            self.live.update(self._table())

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


class RunProgress(RichProgress):
    """``ensemble run``'s progress: bars, notes and lines as every command's, a table per run trained
    here (its ``"trained"`` event), the Ray engine's runs (its ``"grid"`` events) on a :class:`GridView`."""

    def __init__(self, quiet: bool):
        super().__init__(quiet)
        self.view = GridView(quiet)

    def event(self, event: dict[str, Any]) -> None:
        if event["kind"] == "trained" and not self.quiet:
            print_epochs(event["result"], event["seconds"])
        elif event["kind"] == "grid":
            self.view(event["change"], event["row"], event["entry"])

    def close(self) -> None:
        self.stop()
        self.view.stop()


def print_grid(summary: dict[str, Any]) -> None:
    """The summary of a grid on Ray: every run with what became of it."""
    rows = [[r["name"], r["status"] + (" (retried)" if r["attempts"] > 1 else ""), str(r["attempts"]),
             r["node"] or "-", _dev(r), ", ".join(r["candidates"]) or (r["error"] or "")] for r in summary["runs"]]
    rows += [[name, "skipped (already in the registry)", "0", "-", "", ""] for name in summary["skipped"]]
    print_table(f"grid on Ray ({summary['seconds']:.0f} s)", [Col("run"), Col("result"), Col("attempts", True),
                Col("node", drop=2), Col("best dev", drop=1), Col("candidates / error")], rows, keep_all=True)
    console.print(f"done {len(summary['done'])}, skipped {len(summary['skipped'])}, "
                  f"retried {len(summary['retried'])}, failed {len(summary['failed'])}")


def print_dry_run(plan: dict[str, Any]) -> None:
    """The runs, with a column for each option the grid varies."""
    varies = list(plan["runs"][0]["config"].get("varies") or []) if plan["runs"] else []
    rows = [[r["name"], *[_value(r["config"].get(k)) for k in varies], r["fingerprint"], r["status"],
             ", ".join(r["registered"] or r["interrupted"])] for r in plan["runs"]]
    todo = sum(r["status"] == "to train" for r in plan["runs"])
    print_table(f"{plan['grid']}: {len(rows)} runs, {todo} to train (data {plan['data']})",
                [Col("run"), *[Col(k.replace("_", " "), True) for k in varies], Col("fingerprint"), Col("status"),
                 Col("candidates")], rows, keep_all=True)


def _value(v: Any) -> str:
    return "-" if v is None else (f"{v:g}" if isinstance(v, float) else escape(str(v)))


def _ray_options(engine: str, address, gpus_per_run, cpus_per_run, max_retries, device):
    from ..scale.driver import RayOptions, require_ray   # lazy: torch

    if engine == "local":
        given = [o for o, v in (("--address", address), ("--gpus-per-run", gpus_per_run),
                                ("--cpus-per-run", cpus_per_run), ("--max-retries", max_retries)) if v is not None]
        if given:
            raise EnsembleError(f"{given[0]} applies to --engine ray only; add --engine ray")
        return None
    if gpus_per_run is not None and gpus_per_run < 0:
        raise EnsembleError(f"--gpus-per-run {gpus_per_run:g}: expected a number >= 0 (fractions allowed)")
    if cpus_per_run is not None and cpus_per_run <= 0:
        raise EnsembleError(f"--cpus-per-run {cpus_per_run:g}: expected a number > 0 (fractions allowed)")
    if max_retries is not None and max_retries < 0:
        raise EnsembleError(f"--max-retries {max_retries}: expected an integer >= 0")
    require_ray(local=not (address or os.environ.get("RAY_ADDRESS")))   # after the values' checks; before Ray is imported (see require_ray)
    return RayOptions(address=address, gpus_per_run=gpus_per_run, cpus_per_run=cpus_per_run or 1.0,
                      max_retries=2 if max_retries is None else max_retries, device=device)


def run(
    data: DataOpt = None,
    grid: Optional[Path] = typer.Option(None, "--grid", help="Grid file (TOML: [defaults], [grid] lists, [[runs]]) "
                                                             "of what to train; instead of --preset."),
    preset: Optional[Preset] = typer.Option(None, callback=_maybe, help="A shipped grid: quick (CPU, minutes, the "
                                            "default) or paper (the report's 12 runs, for GPUs)."),
    base: Optional[str] = typer.Option(None, help="Encoder for every run (default: the grid's: minilm for quick, "
                                                  "bert-base-uncased for paper)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs, their fingerprints and which are already "
                                                          "in the registry; train nothing."),
    registry: RegistryOpt = Path("checkpoints"),
    out: Path = typer.Option(Path("predictions"), help="Folder for the leaderboard files."),
    submissions: Path = typer.Option(Path("submissions"), help="Folder for the submission zips."),
    mode: SelectMode = typer.Option(DEFAULT_MODE, callback=plain, help="Selection mode (see `ensemble select -h`; "
                                    "auto: per task the system with the best held-out estimate)."),
    system: System = typer.Option("auto", callback=plain,
                                  help="auto: per task, submit the best single candidate where the ensemble is not "
                                       "expected to beat it held out; ensemble: always submit the ensemble."),
    soup: bool = typer.Option(False, "--soup", help="Also make each task's greedy soup of the candidates (`ensemble "
                              "soup`) before selecting; the soups join selection like any candidate."),
    device: DeviceOpt = "auto",
    engine: Engine = typer.Option("local", callback=plain, help="local: one run after another in this process; "
                                  "ray: the runs as Ray tasks over GPUs, CPUs or a cluster (`pip install -e \".[ray]\"`)."),
    address: Optional[str] = typer.Option(None, help="HOST:PORT of a running Ray cluster to join (default: "
                                          "RAY_ADDRESS, else start Ray on this machine).", rich_help_panel=RAY),
    gpus_per_run: Optional[float] = typer.Option(None, help="GPUs per run, fractions allowed (default: 1 where the "
                                                 "cluster has GPUs, else 0).", rich_help_panel=RAY),
    cpus_per_run: Optional[float] = typer.Option(None, help="CPUs per run (default 1); a run trains with that many "
                                                 "threads.", rich_help_panel=RAY),
    max_retries: Optional[int] = typer.Option(None, help="Times a run whose worker or node died is started again "
                                              "(default 2); a run whose code raises is not.", rich_help_panel=RAY),
    as_json: JsonOpt = False,
) -> None:
    """Train a grid (resuming; here or on Ray), select per task, write, validate and zip a submission."""
    from .. import runner  # lazy: keeps select/list/validate fast

    if grid is not None and preset is not None:
        raise EnsembleError("--grid and --preset: expected one of them (a preset is a shipped grid file)")
    opts = runner.RunOptions(data=data, base=base, preset=preset, grid=grid, registry=registry, out=out,
                             submissions=submissions, device=device, mode=mode, system=system, soup=soup)
    if dry_run:
        plan = runner.dry_run(opts)
        if as_json:
            print_json(plan, default=str)
        else:
            print_dry_run(plan)
        return
    opts.engine = _ray_options(engine, address, gpus_per_run, cpus_per_run, max_retries, device)
    progress = RunProgress(as_json)
    try:
        result = runner.run(opts, progress)
    finally:
        progress.close()
    _report(result, out, as_json)


def _report(result: dict[str, Any], out: Path, as_json: bool) -> None:
    """The result (JSON, or the grid's summary and the submission); exit 1 where a run failed."""
    if as_json:
        sel = result["selection"]
        print_json({**result, "selection": sel.to_dict() if sel is not None else None}, default=str)
    else:
        if result["grid"] is not None:
            print_grid(result["grid"])
        if result["selection"] is not None:
            print_run(result, out)
    if result["failed"]:
        names = ", ".join(f"{f['name']} ({f['error']})" for f in result["failed"])
        error(f"{len(result['failed'])} run{'s' if len(result['failed']) > 1 else ''} failed: {names}; nothing was "
              "selected. Run the same command again to train the failed runs (the finished ones are skipped)")
        raise typer.Exit(1)


# -- what it prints ------------------------------------------------------------
def print_run(result: dict[str, Any], out: Path) -> None:
    print_selection(result["selection"])
    console.print(f"[green]validated[/] {len(result['written'])} leaderboard files in {escape(str(out))}")
    for p in result["written"]:
        console.print(f"  {escape(str(p))}")
    console.print(f"[green]submission[/] {escape(str(result['submission']))}")
    console.print(f"finished in {result['seconds']:.0f} s")


# -- registry ------------------------------------------------------------------------------------
