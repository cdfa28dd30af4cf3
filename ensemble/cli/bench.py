"""The ``bench`` commands: selection, inference and training speed, and random encoders to time."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..data import resolve_data
from .options import (DEVICE_HELP, BenchMode, CaruanaStepsOpt, DataOpt, DeviceOpt, JsonOpt, RegistryOpt, SeedOpt,
                      check_device, examples, plain)
from .progress import RichProgress
from .render import console, fmt, print_json, print_table, sample_banner
from .tables import Col


BenchBaseOpt = typer.Option("minilm", help="Encoder to time: hub name, local folder, or 'minilm' (offline stand-in).")


def select(candidates: int = typer.Option(500, help="Synthetic candidates per task."),
           rows: int = typer.Option(20000, help="Synthetic dev rows per task."),
           seed: SeedOpt = 0,
           mode: BenchMode = typer.Option("greedy", callback=plain, help="The selection mode to time, or both."),
           steps: CaruanaStepsOpt = 50, as_json: JsonOpt = False) -> None:
    """Time selection on synthetic predictions against a plain re-averaging implementation."""
    from ..bench.selection import bench_select  # lazy: keeps select/list/validate fast (bench code is loaded only here)

    result = bench_select(candidates, rows, seed=seed, mode=mode, steps=steps)
    if as_json:
        print_json(result, default=float)
        return
    print_bench_select(result, candidates, rows)


def inference(base: str = BenchBaseOpt, data: DataOpt = None,
              quora_limit: Optional[int] = typer.Option(None, help="Use a seeded sample of N Quora dev pairs."),
              compile: bool = typer.Option(False, "--compile", help="Also time torch.compile (compile time "
                                                                    "reported apart)."),
              as_json: JsonOpt = False) -> None:
    """pipeline (default, batch 32) vs this tool's batched inference (fp32, bf16), with matmul peak and FLOPs."""
    from ..bench.inference import bench_inference  # lazy: keeps select/list/validate fast

    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    result = bench_inference(base=base, data_dir=data_dir, quora_limit=quora_limit, compile=compile,
                             progress=RichProgress(as_json))
    if as_json:
        print_json(result, default=float)
        return
    print_bench(result)


def random_base(out: Path = typer.Argument(..., help="New folder for the model."),
                layers: int = typer.Option(12, help="Encoder layers."),
                hidden: int = typer.Option(768, help="Hidden size."),
                heads: int = typer.Option(12, help="Attention heads (must divide the hidden size)."),
                intermediate: Optional[int] = typer.Option(None, help="Feed-forward size (default: 4 x hidden)."),
                seed: SeedOpt = 0) -> None:
    """Write a random BERT encoder of any size (default: BERT-base's) with MiniLM's uncased WordPiece
    tokenizer: a --base for speed measurements with no download (random weights predict nothing)."""
    from ..modeling.bases import make_random_base  # lazy: keeps select/list/validate fast

    path = make_random_base(out, layers, hidden, heads, intermediate, seed=seed)
    console.print(f"wrote a random {layers}-layer, hidden-{hidden} BERT to {escape(str(path))}; measure it with "
                  f"`ensemble bench inference --base {escape(str(path))}`")


def train(base: str = BenchBaseOpt, data: DataOpt = None,
          steps: int = typer.Option(20, help="Training steps timed per variant."),
          batch_size: int = typer.Option(16, help="Examples per batch."),
          task: str = typer.Option("sst", help="The task whose train file gives the batches (sst, para, sts)."),
          options: bool = typer.Option(True, "--options/--no-options", help="Also the training options' rows: bf16, "
                                       "gradient accumulation, gradient checkpointing (tokens/s, peak memory)."),
          option_steps: int = typer.Option(8, help="Steps timed per training option."),
          grad_accum: int = typer.Option(2, help="Batches per optimizer step in the accumulation row."),
          multi_triple: bool = typer.Option(True, "--multi-triple/--no-multi-triple",
                                            help="Also multi+triple with and without gradient checkpointing."),
          as_json: JsonOpt = False) -> None:
    """A training step of the tool (plain, SMART) vs a plain transformers loop on the same batches;
    then the training options against the plain step (same batches)."""
    from ..bench.training import bench_train  # lazy: keeps select/list/validate fast
    from ..bench.training_options import bench_train_options  # lazy: keeps select/list/validate fast

    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    result = bench_train(base=base, data_dir=data_dir, steps=steps, batch_size=batch_size, task=task)
    if options:
        result["options"] = bench_train_options(base=base, data_dir=data_dir, steps=option_steps, task=task,
                                                batch_size=batch_size, accum=grad_accum, multi_triple=multi_triple)
    if as_json:
        print_json(result, default=float)
        return
    opts = result.pop("options", None)
    print_bench(result)
    if opts:
        print_bench(opts)


def grid(data: DataOpt = None,
         runs: int = typer.Option(4, help="Runs in the grid (seeds 0, 1, ...; multi and cerberus-1 in turn)."),
         epochs: int = typer.Option(2, help="Epochs per run."),
         workers: str = typer.Option("1,2", help="Ray instances to time, by their workers (CPUs), comma-separated."),
         hidden: int = typer.Option(64, help="Hidden size of the random tiny BERT trained."),
         as_json: JsonOpt = False) -> None:
    """A small grid on the local engine and on Ray with 1 and 2 workers: wall time, runs per hour,
    speed-up and Ray's overhead per run (scheduling, shipping a candidate back)."""
    from ..bench.grid import bench_grid  # lazy: torch and Ray are loaded only here
    from ..errors import EnsembleError

    try:
        counts = tuple(int(w) for w in workers.split(","))
    except ValueError:
        raise EnsembleError(f"--workers {workers}: expected comma-separated numbers of workers, e.g. 1,2") from None
    if runs < 1 or epochs < 1 or any(w < 1 for w in counts):
        raise EnsembleError("--runs, --epochs and --workers: expected numbers >= 1")
    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    result = bench_grid(data_dir, runs=runs, epochs=epochs, workers=counts, hidden=hidden)
    if as_json:
        print_json(result, default=float)
        return
    print_bench(result)


def search(data: DataOpt = None, base: str = BenchBaseOpt,
           space: str = typer.Option("quick", help="Search space (its lr range also spaces the grid's rates)."),
           grid_runs: int = typer.Option(4, min=1, help="Grid runs (learning rates); their epochs are the budget."),
           epochs: int = typer.Option(3, min=1, help="Epochs a run."),
           train_rows: int = typer.Option(300, min=1, help="Training rows a task."),
           eval_rows: int = typer.Option(300, min=1, help="Dev and test rows a task (the first ones)."),
           seed: SeedOpt = 0, device: str = typer.Option("cpu", help=DEVICE_HELP, callback=check_device),
           as_json: JsonOpt = False) -> None:
    """The same budget of training epochs spent by a grid of learning rates and by `ensemble search`:
    best dev, the selected ensemble's dev, epochs spent and saved by pruning."""
    from ..bench.search import bench_search  # lazy: torch and optuna

    data_dir, sample = resolve_data(data)
    sample_banner(sample)
    result = bench_search(data_dir, base=base, space=space, grid_runs=grid_runs, epochs=epochs, train_rows=train_rows,
                          eval_rows=eval_rows, seed=seed, device=device, progress=RichProgress(as_json))
    if as_json:
        print_json(result, default=float)
        return
    print_bench_search(result)


def print_bench_search(result: dict) -> None:
    from rich.table import Table

    p = result["problem"]
    table = Table(title=f"bench search: {p['base']}, {p['train_rows']} training rows and {p['eval_rows']} dev rows a "
                        f"task, {p['epochs']} epochs a run, budget {p['budget_epochs']} epochs", title_justify="left")
    for col in ("library", "trials", "runs", "candidates", "best mean dev", "ensemble mean dev", "epochs trained",
                "pruned", "epochs saved", "seconds"):
        table.add_column(col, justify="left" if col == "library" else "right", no_wrap=True)
    for name in ("grid", "search"):
        r = result[name]
        table.add_row(name, str(r["trials"]), str(r["runs"]), str(r["candidates"]), f"{r['best_dev']:.4f}",
                      f"{r['ensemble_dev']:.4f}", str(r["epochs"]), str(r["pruned"]), str(r["epochs_saved"]),
                      f"{r['seconds']:.0f}")
    console.print(table)
    console.print(f"grid learning rates: {', '.join(f'{lr:.3g}' for lr in result['grid']['lrs'])}; search's best: "
                  + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in (result["search"]["best_params"] or {}).items()))


@examples("ensemble bench soup --registry checkpoints --data ../data",
          "ensemble bench soup --tasks sts --repeats 5 --json",
          "ensemble bench soup --simulate --replications 200")
def soup(data: DataOpt = None, registry: RegistryOpt = Path("checkpoints"),
         tasks: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated tasks (default: every task "
                                             "of the largest soupable group)."),
         device: DeviceOpt = "auto",
         repeats: int = typer.Option(3, help="Timed prediction calls per system (the best is reported)."),
         simulate: bool = typer.Option(False, "--simulate", help="Instead: the known-truth simulation of the "
                                       "soup's held-out interval (coverage, bias, width)."),
         replications: int = typer.Option(100, help="--simulate: replications per scenario."),
         seed: SeedOpt = 0, as_json: JsonOpt = False) -> None:
    """The best single candidate, the uniform and greedy soups and the ensemble, in one run: dev,
    held-out gain [interval], parameters, sentences/s, peak memory; what building the soups cost."""
    from ..tasks import parse_tasks

    if simulate:
        from ..bench.soup_honesty import run_soup_honesty   # lazy: bench code is loaded only here

        result = run_soup_honesty(replications, seed=seed, progress=RichProgress(as_json))
        result["title"] = "soup held-out interval against known truth"
    else:
        from ..bench.soup import bench_soup   # lazy: torch
        from ..registry.store import Registry

        data_dir, sample = resolve_data(data)
        sample_banner(sample)
        result = bench_soup(Registry(registry), data_dir, parse_tasks(tasks) if tasks else None, device, repeats,
                            seed=seed, progress=RichProgress(as_json))


def startup(repeats: int = typer.Option(5, help="Times each command is started (interleaved); the best counts."),
            as_json: JsonOpt = False) -> None:
    """How long `ensemble --version` and `-h` take to start, against `python -c pass` in the same run (a ratio;
    target: at most 10x)."""
    from ..bench.startup import bench_startup

    result = bench_startup(repeats)
    if as_json:
        print_json(result, default=float)
        return
    print_bench(result)


# -- what these commands print ------------------------------------------------------------
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
