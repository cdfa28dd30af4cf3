"""``ensemble search SPACE`` (a search of the training options, trials as training runs into the
registry) and ``ensemble search show NAME`` (a study's trials and best configuration).

On a terminal the trials are one live table (parameters, epoch, mean dev per epoch, state); in a
pipe or a log, one permanent line per epoch (the run's own) and one per trial as it ends.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from ..data import resolve_data
from ..registry.store import Registry
from .options import DataOpt, DeviceOpt, JsonOpt, RegistryOpt, choice, examples, plain
from .progress import RichProgress
from .render import console, err, print_json, sample_banner

Sampler = choice("Sampler", ("tpe", "random", "qmc"))
Pruner = choice("Pruner", ("median", "hyperband", "halving", "none"))
SearchEngine = choice("SearchEngine", ("local", "ray"))
StorageOpt = typer.Option(None, "--storage", help="Study database URL (postgresql://..., mysql://..., sqlite:///...) "
                                                  "that several machines share (default: SQLite inside the registry).")


class SearchGroup(TyperGroup):
    """``ensemble search SPACE ...`` is ``ensemble search start SPACE ...``: a first word that is no
    subcommand (nor a help flag) is the space."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


class TrialView:
    """The trials as a live table on a terminal, or one permanent line per trial in a pipe."""

    def __init__(self, quiet: bool):
        self.rows: dict[int, dict[str, Any]] = {}
        self.quiet = quiet
        self.live = Live(self.table(), console=err, auto_refresh=False) if err.is_terminal and not quiet else None

    def __enter__(self):
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.stop()

    def __call__(self, kind: str, row: dict[str, Any]) -> None:
        self.rows[row["number"]] = dict(row)
        if self.live:
            self.live.update(self.table(), refresh=True)
        if kind == "end" and not self.quiet:
            err.print(escape(trial_line(row)), soft_wrap=True, highlight=False)
            err.file.flush()

    def table(self) -> Table:
        return trials_table(list(self.rows.values()), "trials")


def trial_line(row: dict[str, Any]) -> str:
    """One permanent line per finished trial."""
    params = "  ".join(f"{k} {_value(v)}" for k, v in row["params"].items())
    if row["state"] == "fail":
        return f"trial {row['number']} failed: {row['error']}  ({params})"
    how = f"pruned after epoch {row['pruned_at']}" if row["state"] == "pruned" else "complete"
    reused = f"  (same configuration as {row['same_as']}: reused)" if row.get("same_as") else ""
    value = f"{row['value']:.4f}" if row.get("value") is not None else "-"
    return (f"trial {row['number']} {how}: best mean dev {value}  candidates "
            f"{', '.join(row['candidates']) or '-'}  {params}{reused}")


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def trials_table(rows: list[dict[str, Any]], title: str) -> Table:
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    table = Table(title=title, title_justify="left")
    for col in ("trial", *keys, "epoch", "mean dev by epoch", "best", "state"):
        table.add_column(col, no_wrap=True, justify="right" if col not in ("state", "mean dev by epoch") else "left")
    for r in sorted(rows, key=lambda r: r["number"]):
        dev = " ".join(f"{v:.3f}" for _, v in sorted(r["dev"].items(), key=lambda kv: int(kv[0])))
        best = max(r["dev"].values(), default=r.get("value"))   # a pruned trial's study value is its last epoch's
        state = r["state"] + (f" @{r['pruned_at']}" if r.get("pruned_at") else "")
        table.add_row(str(r["number"]), *(_value(r["params"][k]) if k in r["params"] else "-" for k in keys),
                      f"{r['epoch']}/{r['epochs']}", dev or "-", f"{best:.4f}" if best is not None else "-", state)
    return table


@examples("ensemble search quick --trials 6 --data ../data",
          "ensemble search paper --trials 40 --pruner hyperband --data ../data",
          "ensemble search my-space.toml --trials 20 --name lr-sweep --storage postgresql://me@db/optuna",
          "ensemble search quick --trials 8 --engine ray")
def search(
    space: str = typer.Argument(..., help="Search-space file (TOML: \\[defaults], \\[space]) or a shipped one: paper, quick."),
    trials: int = typer.Option(10, "--trials", min=1, help="Trials the study holds when done (a rerun with the same "
                                                           "name resumes and runs the missing ones)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds after which no new trial starts."),
    name: Optional[str] = typer.Option(None, "--name", help="Study name (default: the space file's name)."),
    sampler: Sampler = typer.Option("tpe", callback=plain, help="Optuna sampler."),
    pruner: Pruner = typer.Option("median", callback=plain, help="Optuna pruner over epochs (none: every trial "
                                                                 "trains every epoch)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Sampler seed."),
    base: Optional[str] = typer.Option(None, "--base", help="Encoder for every trial (replaces the space's)."),
    storage: Optional[str] = StorageOpt,
    engine: SearchEngine = typer.Option("local", callback=plain, help="local: one trial after another here; ray: "
                                        "trials in parallel as Ray tasks (`pip install -e \".\\[ray]\"`)."),
    parallel: Optional[int] = typer.Option(None, "--parallel", help="ray: trials at once (default: as many as "
                                           "the cluster fits)."),
    address: Optional[str] = typer.Option(None, help="ray: HOST:PORT of a running cluster (default: RAY_ADDRESS, "
                                                     "else start Ray here)."),
    cpus_per_run: float = typer.Option(1.0, help="ray: CPUs per trial."),
    max_retries: int = typer.Option(2, help="ray: times a trial whose worker or node died is started again."),
    registry: RegistryOpt = Path("checkpoints"), data: DataOpt = None, device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Search the training options of SPACE with Optuna: each trial one training run into the registry,
    hopeless trials pruned after an epoch, the study kept in a database (a killed search resumes)."""
    from ..search.space import load_space
    from ..search.trials import SearchOptions, run_search

    spc = load_space(space, {"base": base} if base else None)
    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    opts = SearchOptions(trials, name, timeout, sampler, pruner, seed, storage, device)
    reg = Registry(registry)
    with TrialView(as_json) as view:
        if engine == "ray":
            from ..scale.driver import RayOptions
            from ..search.distributed import search_ray

            ray_opts = RayOptions(address=address, cpus_per_run=cpus_per_run, max_retries=max_retries, device=device)
            result = search_ray(reg, spc, data_dir, opts, ray_opts, parallel=parallel, on_event=view)
        else:
            result = run_search(reg, spc, data_dir, opts, RichProgress(as_json or view.live is not None), view)
    if as_json:
        print_json(result, default=str)
        return
    print_summary(result)


def show(name: str = typer.Argument(..., help="Study name (see `ensemble search show --list`)."),
         registry: RegistryOpt = Path("checkpoints"), storage: Optional[str] = StorageOpt,
         as_json: JsonOpt = False) -> None:
    """A study's trials (parameters, mean dev by epoch, state) and its best configuration."""
    from ..search.space import Space
    from ..search.study import open_study
    from ..search.trials import summary

    study = open_study(registry, name, None, url=storage, create=False)
    kept = study.user_attrs.get("space") or {"path": name, "defaults": {}, "space": {}}
    result = summary(study, Space(Path(kept["path"]), kept["defaults"], {}))
    if as_json:
        print_json(result, default=str)
        return
    print_summary(result)


def print_summary(result: dict[str, Any]) -> None:
    console.print(trials_table(result["trials"], f"study {result['study']}"))
    s = result["states"]
    console.print(f"{len(result['trials'])} trials: {s['complete']} complete, {s['pruned']} pruned, {s['fail']} failed"
                  f"{', ' + str(s['running']) + ' running' if s['running'] else ''}; {result['epochs_spent']} epochs "
                  f"trained, {result['epochs_saved']} saved by pruning")
    best = result["best"]
    if best:
        console.print(f"best: trial {best['number']}, mean dev {best['value']:.4f}, candidates "
                      f"{', '.join(best['candidates'])}")
        console.print("  " + "  ".join(f"{k} = {_value(v)}" for k, v in best["params"].items()))
        console.print("next: `ensemble select` builds ensembles from every kept candidate, `ensemble submit` writes them")
