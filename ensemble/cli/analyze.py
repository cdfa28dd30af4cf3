"""``analyze`` (what the saved ensemble does on dev, as tables) and ``report`` (the same and the
training runs as one self-contained HTML page of plots)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from ..registry.runs import damaged_note
from ..registry.store import Registry
from ..tasks import TASKS, parse_tasks
from .options import DataOpt, JsonOpt, RegistryOpt, complete_ensembles, registry_data
from .render import console, fmt, note, print_json, print_table, sample_banner
from .tables import Col

EnsembleOpt = typer.Option(None, "--ensemble", autocompletion=complete_ensembles, help="Saved ensemble name (default: the latest).")
TaskOpt = typer.Option(None, "--task", help="Only these tasks (sst, para, sts; comma-separated).")


def analyze(
    ensemble: Optional[str] = EnsembleOpt,
    task: Optional[str] = TaskOpt,
    worst: int = typer.Option(5, "--worst", help="How many of the worst errors to list per task."),
    registry: RegistryOpt = Path("checkpoints"),
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Where the saved ensemble helps on dev, beside the best single candidate: confusion matrices, calibration or
    error by band, the rows it fixes and breaks, the worst errors with every member's prediction, and diversity."""
    data_dir, sample = registry_data(registry, data)
    sample_banner(sample)
    from ..report import analysis   # here: numpy and the selection load only for this command

    view = analysis.analyze(Registry(registry), data_dir, ensemble, parse_tasks(task) if task else None, worst, sample)
    if as_json:
        print_json(view)
        return
    print_analysis(view)


def report(
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write; its figures go to "
                                                                "<stem>_files/ beside it as PNG files."),
    ensemble: Optional[str] = EnsembleOpt,
    task: Optional[str] = TaskOpt,
    registry: RegistryOpt = Path("checkpoints"),
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML page of plots (selection curves, learning curves, dev score against each
    hyperparameter, confusion matrices, member correlation, the summary table); no network needed to view it."""
    from ..report import page as report_mod  # lazy: matplotlib, loaded by this command only

    data_dir, sample = registry_data(registry, data)
    sample_banner(sample)
    result = report_mod.report(Registry(registry), data_dir, out, ensemble, parse_tasks(task) if task else None, sample)
    damaged = damaged_note(Path(registry))
    if damaged:
        result["notes"] = [*result["notes"], damaged]
    if as_json:
        print_json(result)
        return
    for text in result["notes"]:
        note(text)
    for path in result["figures"]:
        console.print(f"wrote {escape(path)}", highlight=False)
    console.print(f"[green]wrote[/] {escape(result['report'])} ({len(result['figures'])} figures embedded; "
                  f"{result['runs']} training runs)" + (" (SAMPLE DATA)" if result["sample"] else ""), highlight=False)


# -- the tables ---------------------------------------------------------------------------------
def _v(task: str, v: Any) -> str:
    """A prediction or gold value: the sst class, the para probability, the sts score."""
    if v is None:
        return "-"
    if TASKS[task].kind == "classes" or isinstance(v, int):
        return str(v)
    return f"{v:.4f}" if TASKS[task].kind == "binary" else f"{v:.2f}"


def _text(row: dict[str, Any]) -> str:
    return escape(row["text_a"] + ("" if row.get("text_b") is None else f" || {row['text_b']}"))


def _matrices(task: str, t: dict[str, Any], title: str) -> None:
    k = len(t["ensemble"]["confusion"])
    for key, who in (("ensemble", "ensemble"), ("best_single", "best single candidate")):
        q = t[key]
        rows = [[str(g), *[str(c) for c in row], str(sum(row)), fmt(acc)]
                for g, (row, acc) in enumerate(zip(q["confusion"], q["per_class_accuracy"]))]
        print_table(f"{title}: {who}, confusion (rows: gold, columns: predicted)",
                    [Col("gold", True), *[Col(f"pred {i}", True) for i in range(k)], Col("rows", True),
                     Col("accuracy", True)], rows)


def _bands(task: str, t: dict[str, Any], title: str) -> None:
    e, s = t["ensemble"]["bands"], t["best_single"]["bands"]
    band = [f"{b['low']:.1f}-{b['high']:.1f}" for b in e]
    if TASKS[task].kind == "binary":
        cols = [Col("predicted p"), Col("ens rows", True), Col("ens mean p", True), Col("ens share paraphrase", True),
                Col("ens accuracy", True), Col("single rows", True, 1), Col("single accuracy", True, 1)]
        rows = [[b, str(x["rows"]), fmt(x["mean_probability"]), fmt(x["positive_rate"]), fmt(x["accuracy"]),
                 str(y["rows"]), fmt(y["accuracy"])] for b, x, y in zip(band, e, s)]
        print_table(f"{title}: accuracy by predicted-probability band (calibration)", cols, rows)
        return
    cols = [Col("gold band"), Col("rows", True), Col("ens pearson", True), Col("ens mean abs error", True),
            Col("ens mean error", True, 2), Col("single pearson", True, 1), Col("single mean abs error", True, 1)]
    rows = [[b, str(x["rows"]), fmt(x["pearson"]), fmt(x["mean_abs_error"]), fmt(x["mean_error"]), fmt(y["pearson"]),
             fmt(y["mean_abs_error"])] for b, x, y in zip(band, e, s)]
    print_table(f"{title}: by gold-score band", cols, rows)


def _off_by(t: dict[str, Any], title: str) -> None:
    e, s = t["ensemble"]["off_by"], t["best_single"]["off_by"]
    print_table(f"{title}: how far off the errors are", [Col("off by", True), Col("ensemble", True),
                                                          Col("best single", True)],
                [[k, str(e[k]), str(s[k])] for k in e])


def _changes(task: str, t: dict[str, Any], title: str) -> None:
    what = "within 1.0 of gold" if TASKS[task].kind == "regression" else "right"
    console.print(f"{title}: the ensemble fixes {t['fixes']} rows and breaks {t['breaks']} (net "
                  f"{t['fixes'] - t['breaks']:+d}) against the best single candidate (a row is fixed when the "
                  f"ensemble is {what} and the single is not)", highlight=False)
    rows = [[change, escape(r["id"]), _v(task, r["gold"]), _v(task, r["ensemble"]), _v(task, r["best_single"]),
             _text(r)] for change, key in (("fixed", "fixed"), ("broken", "broken")) for r in t[key]]
    if rows:
        print_table(f"{title}: first fixed and broken rows", [Col("change"), Col("id", drop=1), Col("gold", True),
                                                              Col("ensemble", True), Col("single", True),
                                                              Col("text", floor=20)], rows)


def _legend(t: dict[str, Any]) -> list[str]:
    """m1, m2 ... for the members (in selection order), and the line that names them."""
    labels = [f"m{i}" for i in range(1, len(t["members"]) + 1)]
    console.print("  members: " + "; ".join(f"{m} = {escape(t['names'].get(c, c))} ({c}, weight {w:g})"
                                            for m, (c, w) in zip(labels, t["members"].items())), highlight=False)
    return labels


def _worst(task: str, t: dict[str, Any], title: str, labels: list[str]) -> None:
    if not t["worst"]:
        return
    members = list(t["members"])
    rows = [[escape(r["id"]), _v(task, r["gold"]), _v(task, r["ensemble"]),
             *[_v(task, r["members"][c]) for c in members], _text(r)] for r in t["worst"]]
    print_table(f"{title}: the {len(rows)} worst errors of the ensemble",
                [Col("id", drop=len(members) + 2), Col("gold", True), Col("ensemble", True),
                 *[Col(m, True, len(members) + 1 - i) for i, m in enumerate(labels)], Col("text", floor=20)], rows,
                hint="--json shows every member's prediction")


def _diversity(task: str, t: dict[str, Any], title: str, labels: list[str]) -> None:
    d = t["diversity"]
    if len(labels) < 2:
        console.print(f"{title}: one member, no diversity to show", highlight=False)
        return
    for key, what in (("correlation", "pairwise correlation of predictions"),
                      ("disagreement", "share of rows where the rounded predictions differ")):
        if d.get(key) is not None:
            print_table(f"{title}: members' {what}", [Col("member"), *[Col(m, True) for m in labels]],
                        [[m, *[f"{v:.3f}" for v in row]] for m, row in zip(labels, d[key])])


def print_task(task: str, t: dict[str, Any], name: str, sample: bool) -> None:
    title = task + (" (SAMPLE DATA)" if sample else "")
    best = t["best_single_id"]
    console.print(f"[bold]{escape(title)}[/]: {escape(name)}'s selected ensemble, {len(t['members'])} member"
                  f"{'s' if len(t['members']) != 1 else ''}, dev {t['metric']} {t['ensemble_score']:.4f}, beside the "
                  f"best single candidate {escape(t['names'].get(best, best))} ({best}) {t['best_single_score']:.4f}; "
                  f"{t['rows']} dev rows; saved system: {t['system']}", highlight=False)
    labels = _legend(t)
    if TASKS[task].kind != "regression":
        _matrices(task, t, title)
    if TASKS[task].kind == "classes":
        _off_by(t, title)
    else:
        _bands(task, t, title)
    _changes(task, t, title)
    _worst(task, t, title, labels)
    _diversity(task, t, title, labels)


def print_analysis(view: dict[str, Any]) -> None:
    for text in view["notes"]:
        note(text)
    console.print(f"ensemble {escape(view['ensemble'])} ({view['mode']}, selected {view['created']}) on the dev "
                  f"files of {escape(view['data'])}", highlight=False)
    for task, t in view["tasks"].items():
        console.print()
        print_task(task, t, view["ensemble"], view["sample"])
