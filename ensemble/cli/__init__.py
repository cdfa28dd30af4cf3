"""The ``ensemble`` command line: thin typer commands over the modules, rich tables and progress.

Only this module imports typer and rich. Any :class:`EnsembleError` becomes a red message and
exit code 1.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..data import resolve_data
from ..errors import EnsembleError
from ..tasks import TASK_NAMES, TASKS, parse_tasks

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train multitask BERT candidates, keep them in a verified registry, build greedy per-task "
                       "ensembles and write CS224N leaderboard submissions.")
bench_app = typer.Typer(no_args_is_help=True, help="Measure selection, inference and training speed.")
app.add_typer(bench_app, name="bench")
console = Console()
err = Console(stderr=True)

REGISTRY = typer.Option(Path("checkpoints"), "--registry", help="Registry folder.")
DATA = typer.Option(None, "--data", help="Course data folder (default: ./data if present, else the packaged sample).")
JSON = typer.Option(False, "--json", help="Print JSON instead of tables.")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
COMPILE = typer.Option(False, "--compile", help="Run the models through torch.compile (pays only on large inputs; "
                                                  "see `ensemble bench inference --compile`).")
PRECISION = typer.Option("fp32", "--precision", help="Inference precision: fp32, bf16 (CUDA, or CPUs with bf16), fp16 (CUDA).")


class RichProgress:
    """The modules' progress hooks (start/advance/stop/note) on a rich progress bar."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.bar: Progress | None = None
        self.task = None

    def start(self, description: str, total: int | None = None) -> None:
        self.stop()
        if self.quiet or not err.is_terminal:   # no bars (and no blank lines) in logs and pipes
            return
        self.bar = Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=err, transient=True)
        self.bar.start()
        self.task = self.bar.add_task(description, total=total, info="")

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self.bar is not None:
            info = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
            self.bar.update(self.task, advance=n, info=info)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def note(self, text: str) -> None:
        if not self.quiet:
            err.print(f"[yellow]{escape(text)}[/]", soft_wrap=True)


def fail(e: EnsembleError) -> None:
    err.print(f"[bold red]error:[/] [red]{escape(str(e))}[/]", soft_wrap=True, highlight=False)
    raise typer.Exit(1)


def _registry(path: Path, create: bool = True):
    from ..registry import Registry
    return Registry(path, create=create)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _params(n: Any) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


def _sample_banner(sample: bool) -> None:
    if sample:
        err.print("[bold magenta]SAMPLE DATA:[/] [magenta]the packaged sample (not course data); scores mean nothing.[/]")


# -- train ---------------------------------------------------------------------------------------
@app.command()
def train(
    data: Optional[Path] = DATA,
    base: str = typer.Option("bert-base-uncased", help="Encoder: hub name, local folder, or 'minilm' (offline stand-in)."),
    architecture: str = typer.Option("multi", "--architecture", "-a", help="multi, cerberus, triple, static, multi+triple."),
    task_layers: int = typer.Option(0, help="cerberus: top K layers copied per task."),
    tasks: str = typer.Option(",".join(TASK_NAMES), help="Comma-separated subset of sst,para,sts."),
    lr: float = typer.Option(1e-5, help="Base learning rate (top encoder layer)."),
    epochs: int = typer.Option(10, help="Epochs; each epoch best for some task becomes a candidate."),
    batch_size: int = typer.Option(16),
    weight_decay: float = typer.Option(1e-4, help="AdamW weight decay (1e-5 suits SST alone)."),
    layer_decay: float = typer.Option(0.95, help="Learning-rate factor per layer below the top."),
    head_lr_mult: float = typer.Option(1.0, help="Head learning rate = lr x this."),
    embed_lr_mult: float = typer.Option(1.0, help="Extra factor on the embeddings' rate; 0 freezes them."),
    head_dropout: float = typer.Option(0.0),
    hidden_dropout: float = typer.Option(0.1),
    smart_weight: float = typer.Option(0.0, help="SMART lambda_s (0 = off; 10-15 in the report's best models)."),
    smart_steps: int = typer.Option(1), smart_sigma: float = typer.Option(1e-5),
    smart_eta: float = typer.Option(1e-3), smart_epsilon: float = typer.Option(1e-6),
    seed: int = typer.Option(0),
    limit: Optional[int] = typer.Option(None, help="Use the first N training examples per task."),
    max_length: Optional[int] = typer.Option(None, help="Truncate inputs to N tokens (default: the model's limit)."),
    precision: str = typer.Option("auto", help="Training autocast: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16."),
    device: str = DEVICE,
    registry: Path = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Fine-tune a multitask model; register every epoch that is best on dev for some task."""
    from ..train import TrainConfig
    from ..train import train as run_train

    try:
        data_dir, sample = resolve_data(data)
        _sample_banner(sample)
        cfg = TrainConfig(base=base, architecture=architecture, task_layers=task_layers, tasks=parse_tasks(tasks),
                          lr=lr, epochs=epochs, batch_size=batch_size, weight_decay=weight_decay,
                          layer_decay=layer_decay, head_lr_mult=head_lr_mult, embed_lr_mult=embed_lr_mult,
                          head_dropout=head_dropout, hidden_dropout=hidden_dropout, smart_weight=smart_weight,
                          smart_steps=smart_steps, smart_sigma=smart_sigma, smart_eta=smart_eta,
                          smart_epsilon=smart_epsilon, seed=seed, limit=limit, max_length=max_length,
                          precision=precision)
        t0 = time.perf_counter()
        result = run_train(cfg, data_dir, _registry(registry), device=device, progress=RichProgress(as_json))
        elapsed = time.perf_counter() - t0
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps({**result.to_dict(), "seconds": elapsed}, indent=2))
        return
    print_epochs(result, elapsed)


def print_epochs(result, elapsed: float) -> None:
    cfg = result.config
    table = Table(title=f"{cfg.run_name}  ({_params(result.parameters)} parameters, {result.device}, {elapsed:.1f} s)")
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


# -- registry browsing ---------------------------------------------------------------------------
@app.command("list")
def list_(registry: Path = REGISTRY, sort: Optional[str] = typer.Option(None, help="Sort by a task's dev metric (sst, para, sts)."),
          as_json: bool = JSON) -> None:
    """The candidates in the registry."""
    try:
        cands = _registry(registry).candidates()
        if sort is not None and sort not in TASKS:
            raise EnsembleError(f"--sort {sort}: expected one of {', '.join(TASKS)}")
    except EnsembleError as e:
        fail(e)
    if sort:
        cands.sort(key=lambda c: (c.dev_metric(sort) is None, -(c.dev_metric(sort) or 0.0), c.id))
    if as_json:
        print(json.dumps([{
            "id": c.id, "name": c.name, "kind": c.kind, "architecture": c.manifest.get("architecture"),
            "tasks": c.tasks, "parameters": c.manifest.get("parameters"),
            "dev": {t: c.dev_metric(t) for t in TASKS if c.dev_metric(t) is not None},
            "epoch": (c.manifest.get("training") or {}).get("epoch"), "created": c.manifest.get("created"),
            "base": (c.manifest.get("model") or {}).get("base"),
            "base_provenance": (c.manifest.get("training") or {}).get("base_provenance"),
        } for c in cands], indent=2))
        return
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
                      _params(c.manifest.get("parameters")), *[_fmt(c.dev_metric(t)) for t in TASKS],
                      _fmt(tr.get("epoch")), base, (c.manifest.get("created") or "")[:16].replace("T", " "))
    console.print(table)


@app.command()
def show(candidate: str = typer.Argument(..., help="Candidate id (or unique prefix, or name)."),
         registry: Path = REGISTRY, as_json: bool = JSON) -> None:
    """A candidate's config, metrics, files and hashes."""
    try:
        c = _registry(registry).get(candidate)
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps(c.manifest, indent=2, sort_keys=True))
        return
    m = c.manifest
    console.print(f"[bold]{c.id}[/]  {c.name}  ({m.get('kind')}, {m.get('architecture')}, {_params(m.get('parameters'))} parameters)")
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
            t.add_row(task, split, _fmt(m.get("metrics", {}).get(task, {}).get(split)), str(e.get("rows")),
                      e.get("data_file", "-"), (e.get("data_sha256") or "-")[:16])
    console.print(t)
    f = Table(title="files")
    f.add_column("file")
    f.add_column("size", justify="right")
    f.add_column("sha256")
    for rel, info in sorted(m.get("files", {}).items()):
        f.add_row(rel, f"{info['size']:,}", info["sha256"])
    console.print(f)


@app.command()
def verify(candidates: Optional[list[str]] = typer.Argument(None, help="Candidates to check (default: all)."),
           registry: Path = REGISTRY, as_json: bool = JSON) -> None:
    """Rehash every stored file; exit 1 naming each mismatched, missing or extra file."""
    try:
        checked, problems = _registry(registry, create=False).verify(candidates or None)
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps({"checked": [c.id for c in checked], "problems": [p.__dict__ for p in problems]}, indent=2))
    else:
        for p in problems:
            err.print(f"[red]{escape(str(p))}[/]", soft_wrap=True, highlight=False)
        n_files = sum(len(c.manifest.get("files", {})) for c in checked)
        colour = "red" if problems else "green"
        console.print(f"[{colour}]{len(checked)} candidates, {n_files} files checked: {len(problems)} problems[/]")
    if problems:
        raise typer.Exit(1)


@app.command()
def remove(candidate: str, registry: Path = REGISTRY, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete a candidate from the registry."""
    try:
        reg = _registry(registry, create=False)
        c = reg.get(candidate)
        if not yes and not typer.confirm(f"remove candidate {c.id} ({c.name})?", default=False):
            console.print("kept")
            raise typer.Exit(1)
        reg.remove(c.id)
    except EnsembleError as e:
        fail(e)
    console.print(f"removed {c.id} ({c.name})")


@app.command()
def register(
    paths: Optional[list[Path]] = typer.Argument(None, help="Candidate folders exported from another registry, or model folders."),
    data: Optional[Path] = DATA,
    predictions: Optional[Path] = typer.Option(None, help="Folder of <task>-<split>.csv prediction files from other code."),
    name: Optional[str] = typer.Option(None, help="Name shown in tables."),
    parameters: Optional[int] = typer.Option(None, help="--predictions: the model's parameter count, for the tables."),
    refresh: bool = typer.Option(False, "--refresh", help="Recompute the cached predictions of stale candidates."),
    force: bool = typer.Option(False, help="--refresh: recompute even when not stale (named candidates or all)."),
    candidates: Optional[list[str]] = typer.Option(None, "--candidate", "-c", help="--refresh: only these."),
    precision: str = PRECISION,
    compile: bool = COMPILE,
    device: str = DEVICE,
    registry: Path = REGISTRY,
) -> None:
    """Add a model (its dev and test predictions are computed now) or predictions made elsewhere."""
    from .. import register as reg_mod

    try:
        data_dir, sample = resolve_data(data)
        _sample_banner(sample)
        reg = _registry(registry)
        progress = RichProgress()
        if refresh:
            done = reg_mod.refresh(reg, data_dir, candidates, device=device, precision=precision, progress=progress,
                                   force=force, compile=compile)
            progress.stop()
            for c, stale in done:
                console.print(f"refreshed {c.id} ({c.name}): {'; '.join(stale) or 'forced'}")
            if not done:
                console.print("no stale candidates")
            return
        if bool(paths) == (predictions is not None):
            raise EnsembleError("give either PATH... (models or exported candidates) or --predictions DIR --name NAME")
        if predictions is not None:
            if not name:
                raise EnsembleError("--predictions needs --name NAME")
            added = [reg_mod.register_predictions(reg, predictions, name, data_dir, parameters)]
        else:
            if name and len(paths) > 1:
                raise EnsembleError("--name applies to one PATH; several were given")
            from ..infer import TokenCache
            cache = TokenCache()   # each input file is tokenised once for all models sharing a tokenizer
            added = []
            for path in paths:     # one model in memory at a time
                added.append(reg_mod.register_model(reg, path, data_dir, name, device=device, precision=precision,
                                                    progress=progress, cache=cache, compile=compile))
                progress.stop()
                _registered(added[-1])
            return
        progress.stop()
    except EnsembleError as e:
        fail(e)
    for c in added:
        _registered(c)


def _registered(c) -> None:
    dev = ", ".join(f"{t} {c.dev_metric(t):.4f}" for t in TASKS if c.dev_metric(t) is not None)
    console.print(f"registered [bold]{c.id}[/] ({c.name}): dev {dev}")


# -- selection -----------------------------------------------------------------------------------
@app.command("select")
def select_cmd(
    data: Optional[Path] = DATA,
    registry: Path = REGISTRY,
    mode: str = typer.Option("greedy", help="greedy (SPEC: best-first, join if dev does not drop) or caruana (with replacement)."),
    max_size: Optional[int] = typer.Option(None, help="At most this many members per task."),
    steps: int = typer.Option(50, help="caruana: selection steps."),
    repeats: int = typer.Option(20, help="Cross-fit repeats for the held-out estimate."),
    seed: int = typer.Option(0, help="Seed of the cross-fit splits."),
    tasks: str = typer.Option(",".join(TASK_NAMES)),
    name: Optional[str] = typer.Option(None, help="Name of the saved ensemble (default: ensemble-<mode>)."),
    as_json: bool = JSON,
) -> None:
    """Build each task's ensemble; show what each member adds and how much gain survives held out."""
    from .. import workflow

    try:
        if mode not in ("greedy", "caruana"):
            raise EnsembleError(f"--mode {mode}: expected greedy or caruana")
        data_dir, sample = resolve_data(data)
        _sample_banner(sample)
        report = workflow.select(_registry(registry), data_dir, parse_tasks(tasks), mode, max_size, steps, repeats,
                                 seed, name, sample=sample)
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    print_selection(report)


def print_selection(report) -> None:
    for note in report.notes:
        err.print(f"[yellow]{escape(note)}[/]", soft_wrap=True)
    for task, sel in report.tasks.items():
        t = Table(title=f"{task}: {report.mode} selection ({TASKS[task].metric} on dev)")
        for col in ("step", "candidate", "own dev", "ensemble dev", "change", "", "why"):
            t.add_column(col, justify="right" if col in ("step", "own dev", "ensemble dev", "change") else "left")
        for s in sel["trajectory"]:
            ok = s.get("accepted")
            t.add_row(str(s.get("step")), str(s.get("candidate")), _fmt(s.get("own_score")), _fmt(s.get("ensemble_score")),
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
    s = Table(title="summary" + (" (SAMPLE DATA)" if report.sample else ""))
    tasks = list(report.tasks)
    for col in ("system", "params", *[f"{t} dev" for t in tasks], "mean dev", "mean held-out est."):
        s.add_column(col, justify="left" if col == "system" else "right")
    for row in report.summary:
        s.add_row(row["system"], _params(row["parameters"]), *[_fmt(row["dev"].get(t)) for t in tasks],
                  _fmt(row["mean_dev"]), _fmt(row.get("mean_heldout")))
    console.print(s)
    if report.path:
        console.print(f"saved ensemble [bold]{report.name}[/] to {report.path}")


# -- leaderboard files ---------------------------------------------------------------------------
@app.command()
def predict(
    data: Optional[Path] = DATA,
    out: Path = typer.Option(Path("predictions"), help="Folder for the leaderboard files."),
    ensemble: Optional[str] = typer.Option(None, help="Saved ensemble name (default: the latest)."),
    input: Optional[Path] = typer.Option(None, "--input", help="A new file in the course format to predict."),
    task: Optional[str] = typer.Option(None, help="--input: its task (sst, para, sts)."),
    precision: str = PRECISION,
    compile: bool = COMPILE,
    device: str = DEVICE,
    registry: Path = REGISTRY,
    as_json: bool = JSON,
) -> None:
    """Write the six leaderboard files from the ensemble's cached predictions (or run it on --input)."""
    from .. import workflow

    try:
        reg = _registry(registry)
        if input is not None:
            if task is None:
                raise EnsembleError("--input needs --task (sst, para or sts)")
            result = workflow.predict_input(reg, input, task, out, ensemble, device, precision, RichProgress(as_json),
                                            compile=compile)
        else:
            data_dir, sample = resolve_data(data)
            _sample_banner(sample)
            result = workflow.predict(reg, data_dir, out, ensemble)
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    for n in result.get("notes", []):
        err.print(f"[yellow]{escape(n)}[/]", soft_wrap=True)
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


@app.command()
def validate(pred_dir: Path = typer.Argument(Path("predictions"), help="Folder of leaderboard files."),
             data: Optional[Path] = DATA, as_json: bool = JSON) -> None:
    """Check leaderboard files against the data: header, ids, duplicates, values. Exit 1 on any problem."""
    from ..validate import format_problems, validate_dir

    try:
        data_dir, sample = resolve_data(data)
        problems = validate_dir(pred_dir, data_dir)
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps([p.__dict__ for p in problems], indent=2))
    elif problems:
        err.print(f"[red]{escape(format_problems(problems))}[/]", soft_wrap=True, highlight=False)
        err.print(f"[bold red]{len(problems)} problems in {pred_dir}[/]")
    else:
        console.print(f"[green]{pred_dir}: all six leaderboard files are valid against {data_dir}[/]")
    if problems:
        raise typer.Exit(1)


@app.command()
def submit(predictions: Path = typer.Option(Path("predictions"), help="Folder of leaderboard files."),
           out: Path = typer.Option(Path("submissions"), help="Folder for the zip."),
           data: Optional[Path] = DATA,
           ensemble: Optional[str] = typer.Option(None, help="Ensemble the files came from (recorded in the manifest)."),
           include_source: Optional[Path] = typer.Option(None, help="Also zip this source tree's code, as the course zip does."),
           registry: Path = REGISTRY) -> None:
    """Validate, then zip the predictions with a manifest; never overwrites an earlier submission."""
    from ..leaderboard import score_dir
    from ..submission import make_submission

    try:
        data_dir, sample = resolve_data(data)
        info: dict[str, Any] = {"sample_data": sample}
        try:
            doc = _registry(registry, create=False).load_ensemble(ensemble)
            info.update(name=doc["name"], created=doc.get("created"), tasks=doc.get("tasks"))
        except EnsembleError:
            if ensemble:
                raise
        scores = score_dir(predictions, data_dir)
        mean = sum(scores.values()) / len(scores) if scores else None
        path = make_submission(predictions, out, data_dir, info, mean, include_source)
    except EnsembleError as e:
        fail(e)
    console.print(f"[green]wrote {path}[/]")


# -- pretrain ------------------------------------------------------------------------------------
@app.command()
def pretrain(
    data: Optional[Path] = DATA,
    base: str = typer.Option("bert-base-uncased", help="Encoder to adapt: hub name, local folder, or 'minilm'."),
    tasks: str = typer.Option(",".join(TASK_NAMES)),
    steps: int = typer.Option(1000),
    out: Path = typer.Option(..., help="Output encoder folder (use it as `ensemble train --base OUT`)."),
    lr: float = typer.Option(1e-5),
    layer_decay: float = typer.Option(1.0),
    batch_size: int = typer.Option(32),
    seed: int = typer.Option(0),
    checkpoint_every: int = typer.Option(500, help="Save a resumable checkpoint every K steps."),
    include_eval_inputs: bool = typer.Option(False, help="Also use the (unlabelled) dev and test inputs' text."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in OUT."),
    device: str = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Further masked-language-model pretraining on the tasks' own text."""
    from ..pretrain import pretrain as run_pretrain

    try:
        data_dir, sample = resolve_data(data)
        _sample_banner(sample)
        result = run_pretrain(data_dir=data_dir, base=base, tasks=parse_tasks(tasks), steps=steps, out=out, lr=lr,
                              layer_decay=layer_decay, batch_size=batch_size, seed=seed,
                              checkpoint_every=checkpoint_every, include_eval_inputs=include_eval_inputs,
                              resume=resume, device=device, progress=RichProgress(as_json))
    except EnsembleError as e:
        fail(e)
    d = result.to_dict() if hasattr(result, "to_dict") else dict(result.__dict__)
    if as_json:
        print(json.dumps(d, indent=2, default=str))
        return
    t = Table(title=f"MLM pretraining -> {out}")
    t.add_column("field")
    t.add_column("value")
    for k, v in d.items():
        t.add_row(k, _fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v, default=str)[:120])
    console.print(t)


# -- bench ---------------------------------------------------------------------------------------
@bench_app.command("select")
def bench_select(candidates: int = typer.Option(500), rows: int = typer.Option(20000), seed: int = typer.Option(0),
                 mode: str = typer.Option("greedy", help="greedy, caruana or both."),
                 steps: int = typer.Option(50, help="caruana: selection steps."),
                 as_json: bool = JSON) -> None:
    """Time selection on synthetic predictions against a plain re-averaging implementation."""
    from ..selector import bench_select as run

    if mode not in ("greedy", "caruana", "both"):
        fail(EnsembleError(f"--mode {mode}: expected greedy, caruana or both"))
    result = run(candidates, rows, seed=seed, mode=mode, steps=steps)
    if as_json:
        print(json.dumps(result, indent=2, default=float))
        return
    t = Table(title=f"selection on synthetic predictions: {candidates} candidates x {rows} rows "
                    f"({result.get('cpu_count')} CPUs, load {result.get('load_avg_1min')})")
    for col in ("task/mode", "members", "fast (s)", "plain re-averaging (s)", "speed-up", "same ensemble", "note"):
        t.add_column(col, justify="left" if col in ("task/mode", "note") else "right")
    for key, r in result["results"].items():
        prefix = r.get("plain_on_prefix")
        t.add_row(key, str(r.get("ensemble_size")), f"{r['fast_s']:.3f}", f"{r['plain_s']:.3f}", f"{r['speedup']:.1f}x",
                  str(r.get("identical")), "" if not prefix else f"both timed on a prefix: {prefix}")
    console.print(t)
    console.print(f"fast greedy, all tasks: {result['fast_greedy_total_s']:.3f} s "
                  f"(target under 1 s: {'met' if result.get('target_met') else 'NOT met'})")


def _print_flat(title: str, d: dict[str, Any]) -> None:
    t = Table(title=title)
    t.add_column("measure")
    t.add_column("value", justify="right")

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            t.add_row(prefix, _fmt(v) if isinstance(v, float) else str(v))
    walk("", d)
    console.print(t)


@bench_app.command("inference")
def bench_inference(base: str = typer.Option("minilm"), data: Optional[Path] = DATA,
                    quora_limit: Optional[int] = typer.Option(None, help="Use a seeded sample of N Quora dev pairs."),
                    compile: bool = typer.Option(False, "--compile", help="Also time torch.compile (compile time "
                                                                          "reported apart)."),
                    as_json: bool = JSON) -> None:
    """pipeline (default, batch 32) vs this tool's batched inference (fp32, bf16), with matmul peak and FLOPs."""
    from .. import bench

    try:
        data_dir, sample = resolve_data(data)
        _sample_banner(sample)
        result = bench.bench_inference(base=base, data_dir=data_dir, quora_limit=quora_limit, compile=compile,
                                       progress=RichProgress(as_json))
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps(result, indent=2, default=float))
        return
    _print_bench(result)


@bench_app.command("random-base")
def bench_random_base(out: Path = typer.Argument(..., help="New folder for the model."),
                      layers: int = typer.Option(12), hidden: int = typer.Option(768), heads: int = typer.Option(12),
                      intermediate: Optional[int] = typer.Option(None, help="Default: 4 x hidden."),
                      seed: int = typer.Option(0)) -> None:
    """Write a random BERT encoder of any size (default: BERT-base's) with MiniLM's uncased WordPiece
    tokenizer: a --base for speed measurements with no download (random weights predict nothing)."""
    from .. import bench

    try:
        path = bench.make_random_base(out, layers, hidden, heads, intermediate, seed=seed)
    except EnsembleError as e:
        fail(e)
    console.print(f"wrote a random {layers}-layer, hidden-{hidden} BERT to {path}; measure it with "
                  f"`ensemble bench inference --base {path}`")


@bench_app.command("train")
def bench_train(base: str = typer.Option("minilm"), data: Optional[Path] = DATA, steps: int = typer.Option(20),
                batch_size: int = typer.Option(16), as_json: bool = JSON) -> None:
    """A training step of the tool (plain, SMART) vs a plain transformers loop on the same batches."""
    from .. import bench

    try:
        data_dir, sample = resolve_data(data)
        _sample_banner(sample)
        result = bench.bench_train(base=base, data_dir=data_dir, steps=steps, batch_size=batch_size)
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps(result, indent=2, default=float))
        return
    _print_bench(result)


def _print_bench(result: dict[str, Any]) -> None:
    rows = result.get("rows")
    if isinstance(rows, list) and rows:
        cols = list(rows[0].keys())
        t = Table(title=result.get("title", "benchmark"))
        for c in cols:
            t.add_column(c, justify="left" if c in ("system", "name", "input") else "right")
        for r in rows:
            t.add_row(*[_fmt(r.get(c), 3) if isinstance(r.get(c), float) else str(r.get(c, "-")) for c in cols])
        console.print(t)
        rest = {k: v for k, v in result.items() if k not in ("rows", "title", "targets")}
        if rest:
            _print_flat("details", rest)
    else:
        _print_flat(result.get("title", "benchmark"), {k: v for k, v in result.items() if k != "targets"})
    targets = result.get("targets")
    if targets:
        t = Table(title="targets")
        for c in ("measure", "value", "target", "met"):
            t.add_column(c, justify="left" if c == "measure" else "right")
        for name, x in targets.items():
            met = x.get("met")
            t.add_row(name, f"{x['value']:.4g}" if isinstance(x["value"], float) else str(x["value"]), x["target"],
                      "-" if met is None else ("[green]met[/]" if met else "[red]NOT met[/]"))
        console.print(t)


# -- run -----------------------------------------------------------------------------------------
@app.command()
def run(
    data: Optional[Path] = DATA,
    base: Optional[str] = typer.Option(None, help="Encoder (default: the preset's: minilm for quick, bert-base-uncased for paper)."),
    preset: str = typer.Option("quick", help="quick (CPU, minutes) or paper (the report's grid, for a GPU)."),
    registry: Path = REGISTRY,
    out: Path = typer.Option(Path("predictions")),
    submissions: Path = typer.Option(Path("submissions")),
    device: str = DEVICE,
    as_json: bool = JSON,
) -> None:
    """Train the preset's candidates (resuming), select per task, write, validate and zip a submission."""
    from .. import runner

    try:
        progress = RichProgress(as_json)
        result = runner.run(data=data, base=base, preset=preset, registry=registry, out=out, submissions=submissions,
                            device=device, progress=progress,
                            on_trained=None if as_json else (lambda r, s: print_epochs(r, s)),
                            on_message=None if as_json else (lambda m: err.print(m)))
        progress.stop()
    except EnsembleError as e:
        fail(e)
    if as_json:
        print(json.dumps({**result, "selection": result["selection"].to_dict()}, indent=2, default=str))
        return
    print_selection(result["selection"])
    console.print(f"[green]validated[/] {len(result['written'])} leaderboard files in {out}")
    for p in result["written"]:
        console.print(f"  {p}")
    console.print(f"[green]submission[/] {result['submission']}")
    console.print(f"finished in {result['seconds']:.0f} s")


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # transformers' own bars follow this
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
