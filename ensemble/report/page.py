"""``ensemble report``: one self-contained HTML page of plots about a saved ensemble and the runs
behind it, and each figure as a PNG beside it.

Layout: ``--out report.html`` writes ``report.html`` and ``report_files/<figure>.png`` (the folder
is named after the page, ``<stem>_files``). The page embeds every figure as a ``data:`` URI, its
style is inline CSS, and it has no scripts, fonts, links or any other reference outside itself, so
it opens offline and can be mailed as one file. Each file is written atomically.

Figures, in page order (:func:`draw`): per task ``selection-<task>`` (the selection
curve), ``confusion-<task>`` (``sst`` and ``para``) and ``correlation-<task>`` (two members or
more); then ``learning-curves`` (when some run has dev scores per epoch) and ``dev-vs-<name>``
for each hyperparameter of :data:`HYPERPARAMETERS` that takes more than one value across runs.

Runs come from the registry's run records (:func:`ensemble.registry.runs.read_runs`); candidates of a run
with no record (older registries) give its curve from their manifests: one point per kept epoch.
Imported predictions have no run and appear in no training figure.
"""
from __future__ import annotations

import base64
import html
import re
import struct
from pathlib import Path
from typing import Any, Sequence

from . import analysis, figures
from ..registry.candidate import Candidate
from ..errors import EnsembleError, shown
from ..search.study import search_views
from ..files import atomic_write_bytes, atomic_write_text, make_folder
from ..registry.store import Registry
from ..registry.runs import read_runs
from ..tasks import TASK_NAMES, TASKS

# name -> categorical (strip plot) or numeric (scatter)
HYPERPARAMETERS = {"lr": False, "smart_weight": False, "layer_decay": False, "architecture": True, "schedule": True,
                   "warmup": False, "grad_accum": False, "seed": True, "head_dropout": False, "hidden_dropout": False,
                   "weight_decay": False, "head_lr_mult": False}   # name: categorical (strip plot)
TITLE = "ensemble report: "   # the page's title, by which an earlier report is recognised (refuse_foreign)
# what a run recorded before an option existed trained with (TrainConfig's defaults; tests/report/test_page.py
# checks them against train_config.LATER_FIELDS, which this torch-free room cannot import)
LATER_DEFAULTS = {"schedule": "constant", "warmup": 0.0, "grad_accum": 1}
CSS = """body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f2f2f2}
figure{margin:1.5em 0}img{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}
.sample{background:#fbe3f7;border:2px solid #a0308c;padding:.6em;font-weight:bold}
.notes{color:#8a5a00}"""


# -- training runs ------------------------------------------------------------------------------
def _run_name(cand: Candidate) -> str:
    return re.sub(r"-e\d+$", "", cand.name)


def _from_manifests(run_id: str, cands: list[Candidate]) -> dict[str, Any]:
    """A run without a record: one point per kept epoch, from its candidates' manifests."""
    cands = sorted(cands, key=lambda c: (c.epoch or 0, c.id))
    points = {t: [(c.epoch, c.dev_metric(t)) for c in cands if c.dev_metric(t) is not None and c.epoch is not None]
              for t in TASK_NAMES}
    points = {t: p for t, p in points.items() if p}
    return {"run_id": run_id, "name": _run_name(cands[0]), "config": cands[0].training_config,
            "epochs": points, "kept": points, "source": "candidates' manifests"}


def _from_record(record: dict[str, Any], live: set[str]) -> dict[str, Any]:
    """A run from its record: every epoch's dev scores; kept = epochs whose candidate is still here."""
    epochs, kept = {}, {}
    for t in TASK_NAMES:
        rows = [e for e in record["epochs"] if isinstance(e.get("dev"), dict) and e["dev"].get(t) is not None]
        if rows:
            epochs[t] = [(e["epoch"], e["dev"][t]) for e in rows]
            kept[t] = [(e["epoch"], e["dev"][t]) for e in rows if e.get("candidate") in live]
    return {"run_id": record["run_id"], "name": record.get("name") or record["run_id"],
            "config": record.get("config") or {}, "epochs": epochs, "kept": kept, "source": "run record"}


def training_runs(root: Path, cands: list[Candidate]) -> list[dict[str, Any]]:
    """Every training run of the registry (records first, oldest first; then runs known only from
    their candidates' manifests), each with its dev scores per epoch and its kept epochs."""
    by_run: dict[str, list[Candidate]] = {}
    for c in cands:
        if c.run_id:
            by_run.setdefault(c.run_id, []).append(c)
    records = read_runs(root)
    live = {c.id for c in cands}
    runs = [_from_record(r, live) for r in records]
    recorded = {r["run_id"] for r in records}
    runs += [_from_manifests(rid, cs) for rid, cs in by_run.items() if rid not in recorded]
    return [r for r in runs if r["epochs"]]


def hyper_value(config: dict[str, Any], name: str) -> Any:
    """A run's value of one hyperparameter (architecture: ``cerberus-<task layers>`` for cerberus)."""
    if name == "architecture" and config.get("architecture") == "cerberus":
        return f"cerberus-{config.get('task_layers')}"
    return config.get(name, LATER_DEFAULTS.get(name))


def hyper_points(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[Any, float, str]]]]:
    """Per varying hyperparameter, per task: (value, the run's best dev score, run name)."""
    out = {}
    for name in HYPERPARAMETERS:
        values = {repr(hyper_value(r["config"], name)) for r in runs if hyper_value(r["config"], name) is not None}
        if len(values) < 2:
            continue
        out[name] = {t: [(hyper_value(r["config"], name), max(s for _, s in r["epochs"][t]), r["name"])
                         for r in runs if t in r["epochs"] and hyper_value(r["config"], name) is not None]
                     for t in TASK_NAMES if any(t in r["epochs"] for r in runs)}
    return out


# -- figures --------------------------------------------------------------------------------------
def draw(view: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, bytes]:
    """Every figure's PNG bytes, by name, in page order."""
    out: dict[str, bytes] = {}
    for task, t in view["tasks"].items():
        out[f"selection-{task}"] = figures.selection_curve(task, t["curve"])
        if TASKS[task].kind != "regression":
            out[f"confusion-{task}"] = figures.confusion(task, t["ensemble"]["confusion"], t["best_single"]["confusion"])
        if len(t["members"]) >= 2:
            labels = [f"m{i}" for i in range(1, len(t["members"]) + 1)]
            out[f"correlation-{task}"] = figures.correlation(task, t["diversity"]["correlation"], labels)
    if runs:
        out["learning-curves"] = figures.learning_curves(runs, [t for t in TASK_NAMES if any(t in r["epochs"] for r in runs)])
    for name, pts in hyper_points(runs).items():
        out[f"dev-vs-{name}"] = figures.hyperparameter(name, pts, HYPERPARAMETERS[name])
    for s in view.get("searches", []):
        if s["points"]:
            out[f"search-{s['study']}"] = figures.search_history(s["study"], s["points"])
    return out


def _search_section(searches: list[dict[str, Any]], images: dict[str, bytes]) -> str:
    """Each search: its optimisation history and its parameters' fANOVA importances (the dev score
    against each searched parameter is among the training runs' figures)."""
    parts = []
    for s in searches:
        parts.append(f"<h2>Search {_e(s['study'])}</h2><p>{s['trials']} trials.</p>")
        if f"search-{s['study']}" in images:
            parts.append(_img(f"search-{s['study']}", images[f"search-{s['study']}"], "each trial's best mean dev "
                              "score (hollow: pruned) and the best so far"))
        if s["importances"]:
            parts.append(_table(["parameter", f"importance ({s['evaluator']})"],
                                [[k, v] for k, v in s["importances"].items()]))
        else:
            parts.append("<p>Parameter importances need at least two complete trials with varied parameters.</p>")
    return "".join(parts)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise EnsembleError("not a PNG image (expected the 8-byte PNG signature)")
    return struct.unpack(">II", data[16:24])


# -- the page -------------------------------------------------------------------------------------
def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else _e(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned, everything escaped."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="n">{_num(c)}</td>' if isinstance(c, (int, float)) or c is None
                                    else f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def summary_table(view: dict[str, Any]) -> str:
    """The saved ensemble's results table (as ``select`` printed it when it saved the ensemble)."""
    tasks = list(view["tasks"]) or list(TASK_NAMES)
    rows = [[r["system"], r.get("parameters") or None, *[(r.get("dev") or {}).get(t) for t in tasks], r.get("mean_dev"),
             *[(r.get("heldout") or {}).get(t) for t in tasks]] for r in view["summary"]]
    return _table(["system", "parameters", *[f"{t} dev" for t in tasks], "mean dev",
                   *[f"{t} held-out est." for t in tasks]], rows)


def _img(name: str, data: bytes, caption: str) -> str:
    w, h = png_size(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return (f'<figure id="{_e(name)}"><img src="{uri}" width="{w}" height="{h}" alt="{_e(caption)}">'
            f"<figcaption>{_e(name)}.png: {_e(caption)}</figcaption></figure>")


def breakdown_table(task: str, t: dict[str, Any]) -> str:
    """The task's errors in numbers: per-class accuracy and off-by-k (sst), calibration bands
    (para), Pearson and errors by gold band (sts); the ensemble beside the best single candidate."""
    e, s = t["ensemble"], t["best_single"]
    kind = TASKS[task].kind
    if kind == "classes":
        rows = [[f"class {i}", sum(row), a, b] for i, (row, a, b) in
                enumerate(zip(e["confusion"], e["per_class_accuracy"], s["per_class_accuracy"]))]
        rows += [[f"off by {k}", None, e["off_by"][k], s["off_by"][k]] for k in e["off_by"]]
        return _table(["gold", "rows", "ensemble", "best single"], rows)
    band = [f"{b['low']:.1f}-{b['high']:.1f}" for b in e["bands"]]
    if kind == "binary":
        return _table(["predicted p", "rows", "mean p", "share paraphrase", "accuracy", "single rows", "single accuracy"],
                      [[n, x["rows"], x["mean_probability"], x["positive_rate"], x["accuracy"], y["rows"], y["accuracy"]]
                       for n, x, y in zip(band, e["bands"], s["bands"])])
    return _table(["gold band", "rows", "pearson", "mean abs error", "mean error", "single pearson",
                   "single mean abs error"],
                  [[n, x["rows"], x["pearson"], x["mean_abs_error"], x["mean_error"], y["pearson"], y["mean_abs_error"]]
                   for n, x, y in zip(band, e["bands"], s["bands"])])


def _task_section(task: str, t: dict[str, Any], images: dict[str, bytes]) -> str:
    names = t["names"]
    members = ", ".join(f"m{i} {names.get(c, c)} ({c}, weight {w:g})" for i, (c, w) in enumerate(t["members"].items(), 1))
    parts = [f"<h2>{_e(task)}</h2>",
             f"<p>{_e(t['rows'])} dev rows, {_e(t['metric'])}: ensemble {_num(t['ensemble_score'])}, best single "
             f"candidate {_e(names.get(t['best_single_id']))} {_num(t['best_single_score'])}; the ensemble fixes "
             f"{t['fixes']} rows and breaks {t['breaks']}; saved system: {_e(t['system'])}.</p>",
             f"<p>members: {_e(members)}</p>"]
    parts.append(breakdown_table(task, t))
    captions = {f"selection-{task}": "dev score as members are added (in-sample), the best single candidate "
                                     "(dashed) and the held-out estimate with its interval",
                f"confusion-{task}": "confusion matrices on dev (rows: gold, columns: predicted)",
                f"correlation-{task}": "members' pairwise correlation of predictions on dev"}
    parts += [_img(n, images[n], c) for n, c in captions.items() if n in images]
    return "".join(parts)


def _shown(v: Any) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _runs_section(runs: list[dict[str, Any]], images: dict[str, bytes]) -> str:
    if not runs:
        return "<h2>Training runs</h2><p>No training runs in this registry (imported predictions only).</p>"
    rows = [[r["name"], r["run_id"], r["source"], *[_shown(hyper_value(r["config"], h)) for h in HYPERPARAMETERS]]
            for r in runs]
    parts = ["<h2>Training runs</h2>", _table(["run", "id", "from", *HYPERPARAMETERS], rows),
             _img("learning-curves", images["learning-curves"], "dev score per epoch of every run; stars: the "
                  "epochs kept as candidates")]
    parts += [_img(n, d, f"each run's best dev score against {n[len('dev-vs-'):]}")
              for n, d in images.items() if n.startswith("dev-vs-")]
    return "".join(parts)


def page(view: dict[str, Any], runs: list[dict[str, Any]], images: dict[str, bytes]) -> str:
    """The whole self-contained page."""
    title = f"{TITLE}{view['ensemble']}"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{_e(title)}</title>",
             f"<style>{CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
             f"<p>mode {_e(view['mode'])}, selected {_e(view['created'])}; data {_e(view['data'])}</p>"]
    if view["sample"]:
        parts.append('<p class="sample">SAMPLE DATA: the packaged sample (not course data); scores mean nothing.</p>')
    if view["notes"]:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in view["notes"]) + "</ul>")
    parts += ["<h2>Summary</h2>", summary_table(view)]
    parts += [_task_section(task, t, images) for task, t in view["tasks"].items()]
    parts += [_runs_section(runs, images), _search_section(view.get("searches", []), images), "</body></html>\n"]
    return "\n".join(parts)


def files_dir(out: Path) -> Path:
    """The folder of the page's PNG files: ``<stem>_files`` beside it."""
    return out.parent / f"{out.stem}_files"


FIGURE_FILE = re.compile(r"(?:(?:selection|confusion|correlation)-(?:sst|para|sts)|learning-curves|dev-vs-[a-z_]+)\.png"
                         r"|\..+\.png\.[a-z0-9_]{8}\.tmp")   # a figure, or a killed atomic write's temp file


def refuse_foreign_files(folder: Path) -> None:
    """The figures' folder is written only when this command makes it or it is its own earlier
    output: a real folder (never a symlink) holding only figure PNG files. Anything else there (a
    folder of the user's that happens to have the name) is refused before anything is written."""
    if folder.is_symlink():
        raise EnsembleError(f"{folder}: a symlink (to {folder.resolve()}); the report writes its figures only into a "
                            "folder it made; not followed (remove the link or choose another --out)")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise EnsembleError(f"{folder}: exists and is not a folder; expected the report's figures folder "
                            "(remove it or choose another --out)")
    foreign = sorted(p.name for p in folder.iterdir()
                     if p.is_symlink() or not p.is_file() or not FIGURE_FILE.fullmatch(p.name))
    if foreign:
        raise EnsembleError(f"{folder}: holds {shown(foreign[0])}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}"
                            ", which `ensemble report` did not write; nothing written (remove them or choose "
                            "another --out)")


def refuse_foreign(out: Path) -> None:
    """An existing ``--out`` is replaced only when it is a page this command wrote (its title says so):
    a typo such as ``--out notes.txt`` or ``--out /etc/passwd`` must not destroy the file."""
    if not out.exists():
        return
    try:
        with open(out, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise EnsembleError(f"--out {out}: cannot be read ({e.strerror}); expected a new file or an earlier report")
    if f"<title>{TITLE}".encode() not in head:
        raise EnsembleError(f"--out {out}: exists and is not a page `ensemble report` wrote; not replaced "
                            "(remove it or choose another name)")


MAX_NAME_BYTES = 200


def report(registry: Registry, data_dir: Path, out: Path, ensemble: str | None = None,
           tasks: Sequence[str] | None = None, sample: bool = False) -> dict[str, Any]:
    """Write the page ``out`` and its figures' PNG files; what was written, and the notes."""
    out = Path(out)
    if len(out.name.encode("utf-8")) > MAX_NAME_BYTES:   # its temporary file's name must fit the filesystem's 255
        raise EnsembleError(f"--out {shown(str(out))}: a file name of {len(out.name.encode('utf-8'))} bytes; expected "
                            f"at most {MAX_NAME_BYTES}")
    if out.is_dir():
        raise EnsembleError(f"--out {out}: is a folder; expected the HTML file to write (e.g. {out / 'report.html'})")
    refuse_foreign(out)
    refuse_foreign_files(files_dir(out))
    make_folder(out.parent, "the report")
    view = analysis.analyze(registry, data_dir, ensemble, tasks, worst=0, sample=sample)
    view["searches"] = search_views(registry.root)
    runs = training_runs(registry.root, registry.candidates())
    images = draw(view, runs)
    folder = files_dir(out)
    refuse_foreign_files(folder)   # again, just before writing: nothing foreign appeared meanwhile
    make_folder(folder, "the report's figures")
    written = []
    for name, data in images.items():
        atomic_write_bytes(folder / f"{name}.png", data)
        written.append(str(folder / f"{name}.png"))
    atomic_write_text(out, page(view, runs, images))
    return {"report": str(out), "figures": written, "ensemble": view["ensemble"], "sample": view["sample"],
            "notes": view["notes"], "runs": len(runs)}
