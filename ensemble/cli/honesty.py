"""``ensemble bench honesty``: the known-truth simulation of the held-out interval and the modes,
or (``--registry``/``--data``) the modes on real candidates with part of dev held out by id."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich import box
from rich.table import Table

from ..data import resolve_data
from ..selection.results import jsonable
from .options import JsonOpt
from .progress import RichProgress
from .render import columns, console, print_json, sample_banner


def honesty(replications: int = typer.Option(200, help="Replications per scenario (simulation)."),
            scenarios: Optional[str] = typer.Option(None, help="Comma-separated scenario names (default: all)."),
            modes: str = typer.Option("greedy,greedy-strict,caruana,bagged", help="Comma-separated modes."),
            seed: int = 0,
            registry: Optional[Path] = typer.Option(None, "--registry",
                                                    help="Real check on this registry's candidates instead."),
            data: Optional[Path] = typer.Option(None, "--data", help="Course data folder (real check)."),
            holdout: float = typer.Option(0.3, help="Real check: fraction of dev held out by id."),
            splits: int = typer.Option(20, help="Real check: held-out splits."),
            as_json: JsonOpt = False) -> None:
    """Coverage, bias and width of the held-out gain interval, and each mode's true gain, on simulated
    problems with known truth; with --registry, each mode's held-out gain on real candidates."""
    from ..bench.honesty import real_check, run_honesty  # lazy: keeps select/list/validate fast
    from ..registry import Registry  # lazy: only the real check needs a registry

    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    if registry is not None:
        data_dir, sample = resolve_data(data)
        sample_banner(sample)
        result = real_check(Registry(registry, create=False), data_dir, holdout, splits, mode_list, seed,
                            progress=RichProgress(as_json))
        if as_json:
            print_json(jsonable(result))
        else:
            print_real(result)
        return
    names = None if scenarios is None else [s.strip() for s in scenarios.split(",") if s.strip()]
    result = run_honesty(replications, names, mode_list, seed, progress=RichProgress(as_json))
    if as_json:
        print_json(jsonable(result))
    else:
        print_honesty(result)


def _signed(v: Any) -> str:
    return "-" if v is None or v != v else f"{v:+.4f}"


def print_honesty(result: dict[str, Any]) -> None:
    """One row per scenario and mode, then each mode's mean true gain."""
    console.print(f"interval: {result['interval']}")
    t = Table(title=f"simulated problems: {result['replications']} replications, seed {result['seed']}",
              box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns(t, ("scenario", "mode", "cover", "bias/sd", "rmse", "w/oracle", "true gain", "ok"),
            left=("scenario", "mode"))
    for c in t.columns[:2]:
        c.no_wrap, c.min_width = True, 13
    for r in result["rows"]:
        t.add_row(r["scenario"], r["mode"], f"{r['coverage']:.3f}", f"{r['bias_over_sd']:+.3f}", f"{r['rmse']:.4f}",
                  f"{r['width_ratio']:.2f}", _signed(r["true_gain"]),
                  "yes" if r["meets_targets"] else "NO")
    console.print(t)
    tg = result["targets"]
    console.print(f"targets: coverage {tg['coverage'][0]:.2f}-{tg['coverage'][1]:.2f}, |bias|/sd <= "
                  f"{tg['bias_over_sd']}, width <= {tg['width_ratio']}x the oracle (2 x 1.96 x sd of the error); ok: all three met")
    console.print("mean true gain: " + ", ".join(f"{m} {_signed(v)}" for m, v in result["mean_true_gain"].items()))


def print_real(result: dict[str, Any]) -> None:
    """One row per task and mode: mean held-out gain over the best single, SD across splits, vs greedy."""
    t = Table(title=f"held-out gain on real candidates: {result['splits']} splits, {result['holdout']:.0%} of dev "
                    f"held out by id, seed {result['seed']}")
    columns(t, ("task", "mode", "candidates", "mean gain", "sd", "vs greedy"), left=("task", "mode"))
    for r in result["rows"]:
        t.add_row(r["task"], r["mode"], str(r["candidates"]), _signed(r["mean_gain"]),
                  "-" if r["sd_gain"] != r["sd_gain"] else f"{r['sd_gain']:.4f}", _signed(r.get("vs_greedy")))
    console.print(t)
    for n in result["notes"]:
        console.print(f"note: {n}")
