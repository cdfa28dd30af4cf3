"""``ensemble bench honesty``: the known-truth simulation of the held-out interval and the modes,
or (``--registry``/``--data``) the modes on real candidates with part of dev held out by id."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..selection.results import jsonable
from .options import DataOpt, JsonOpt, registry_data
from .progress import RichProgress
from .render import console, print_json, print_table, sample_banner
from .tables import Col


def honesty(replications: int = typer.Option(200, help="Replications per scenario (simulation)."),
            scenarios: Optional[str] = typer.Option(None, help="Comma-separated scenario names (default: all)."),
            modes: str = typer.Option("greedy,greedy-strict,caruana,bagged", help="Comma-separated modes."),
            seed: int = typer.Option(0, help="Seed of the simulation (or of the real check's held-out draws)."),
            registry: Optional[Path] = typer.Option(None, "--registry",
                                                    help="Real check on this registry's candidates instead."),
            data: DataOpt = None,
            holdout: float = typer.Option(0.3, help="Real check: fraction of dev held out by id."),
            splits: int = typer.Option(20, help="Real check: held-out splits."),
            as_json: JsonOpt = False) -> None:
    """Coverage, bias and width of the held-out gain interval, and each mode's true gain, on simulated
    problems with known truth; with --registry, each mode's held-out gain on real candidates."""
    from ..bench.honesty import real_check, run_honesty  # lazy: keeps select/list/validate fast
    from ..registry.store import Registry  # lazy: only the real check needs a registry

    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    if registry is not None:
        data_dir, sample = registry_data(registry, data)
        sample_banner(sample)
        result = real_check(Registry(registry), data_dir, holdout, splits, mode_list, seed,
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
    cols = [Col("scenario"), Col("mode"), Col("cover", True), Col("bias/sd", True), Col("rmse", True, 1),
            Col("w/oracle", True), Col("true gain", True), Col("ok")]
    rows = [[r["scenario"], r["mode"], f"{r['coverage']:.3f}", f"{r['bias_over_sd']:+.3f}", f"{r['rmse']:.4f}",
             f"{r['width_ratio']:.2f}", _signed(r["true_gain"]), "yes" if r["meets_targets"] else "NO"]
            for r in result["rows"]]
    print_table(f"simulated problems: {result['replications']} replications, seed {result['seed']}", cols, rows)
    tg = result["targets"]
    console.print(f"targets: coverage {tg['coverage'][0]:.2f}-{tg['coverage'][1]:.2f}, |bias|/sd <= "
                  f"{tg['bias_over_sd']}, width <= {tg['width_ratio']}x the oracle (2 x 1.96 x sd of the error); "
                  "ok: all three met", highlight=False)
    console.print("mean true gain: " + ", ".join(f"{m} {_signed(v)}" for m, v in result["mean_true_gain"].items()),
                  highlight=False)


def print_real(result: dict[str, Any]) -> None:
    """One row per task and mode: mean held-out gain over the best single, SD across splits, vs greedy."""
    cols = [Col("task"), Col("mode"), Col("candidates", True, 1), Col("mean gain", True), Col("sd", True, 2),
            Col("vs greedy", True)]
    rows = [[r["task"], r["mode"], str(r["candidates"]), _signed(r["mean_gain"]),
             "-" if r["sd_gain"] != r["sd_gain"] else f"{r['sd_gain']:.4f}", _signed(r.get("vs_greedy"))]
            for r in result["rows"]]
    print_table(f"held-out gain on real candidates: {result['splits']} splits, {result['holdout']:.0%} of dev "
                f"held out by id, seed {result['seed']}", cols, rows)
    for n in result["notes"]:
        console.print(f"note: {n}", highlight=False)
