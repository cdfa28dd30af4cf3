"""The ``ensembles`` commands: list, show and remove the ensembles that ``select`` saved."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ..errors import EnsembleError
from ..registry.store import Registry
from .options import JsonOpt, RegistryOpt, complete_ensembles
from .render import console, err, fmt, note, print_json, print_table, visible
from .tables import Col

NameArg = typer.Argument(..., autocompletion=complete_ensembles, help="The saved ensemble's name (`ensemble ensembles list` shows them).")
FIXED = ("members", "weights", "dev_score", "prediction_sha256")   # a task entry's fields shown in their own columns


def summary(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """One saved ensemble in a line: mode, tasks, distinct members, mean dev score, when saved."""
    tasks = doc.get("tasks", {})
    scores = [e["dev_score"] for e in tasks.values() if e.get("dev_score") is not None]
    members = {cid for e in tasks.values() for cid in e.get("weights", {})}
    return {"name": name, "mode": doc.get("mode"), "tasks": list(tasks), "members": len(members),
            "mean_dev": sum(scores) / len(scores) if scores else None, "saved": doc.get("created"),
            "sample": bool(doc.get("sample"))}


def details(name: str, doc: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A saved ensemble's members and weights per task (``names``: candidate id -> name; a member no
    longer in the registry has none), its dev score, held-out estimate and any interval fields."""
    held = next((row["heldout"] for row in doc.get("summary", []) if row.get("heldout")), {})
    tasks = {}
    for task, entry in doc.get("tasks", {}).items():
        members = [{"id": cid, "name": names.get(cid), "weight": w} for cid, w in entry.get("weights", {}).items()]
        extra = {k: v for k, v in entry.items() if k not in FIXED}
        tasks[task] = {"members": members, "dev_score": entry.get("dev_score"), "heldout": held.get(task), **extra}
    return {**summary(name, doc), "tasks": tasks}


def list_(registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False) -> None:
    """List the saved ensembles: mode, tasks, members, mean dev score, when saved."""
    reg = Registry(registry)
    rows = []
    for name in reg.ensemble_names():
        try:
            rows.append(summary(name, reg.load_ensemble(name)))
        except EnsembleError as e:   # one damaged document does not hide the others
            note(f"{e}; left out")
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(f"no saved ensembles in {escape(str(reg.ensembles_dir))}; `ensemble select` saves one")
        return
    cols = [Col("name"), Col("mode"), Col("tasks", drop=1), Col("members", True), Col("mean dev", True),
            Col("saved", True, 2)]
    print_table(f"saved ensembles in {reg.ensembles_dir}", cols,
                [[escape(r["name"]), escape(r["mode"] or "-"), ",".join(r["tasks"]), str(r["members"]),
                  fmt(r["mean_dev"]), escape(r["saved"] or "-")] for r in rows])


def show(name: str = NameArg, registry: RegistryOpt = Path("checkpoints"), as_json: JsonOpt = False) -> None:
    """Show a saved ensemble: each task's members and weights, dev score and held-out estimate."""
    reg = Registry(registry)
    d = details(name, reg.load_ensemble(name), {c.id: c.name for c in reg.candidates()})
    if as_json:
        print_json(d)
        return
    console.print(f"[bold]{escape(name)}[/]  mode {escape(str(d['mode'] or '-'))}, saved {escape(str(d['saved'] or '-'))}"
                  + (" (SAMPLE DATA)" if d["sample"] else ""))
    for task, entry in d["tasks"].items():
        console.print(f"[bold]{task}[/]: dev {fmt(entry['dev_score'])}; {escape(_interval(entry.get('interval')))}; "
                      f"submitted: {escape(str(entry.get('system') or 'ensemble'))}", highlight=False)
        print_table("", [Col("member"), Col("name"), Col("weight", True)],
                    [[m["id"], escape(m["name"] or "(no longer in the registry)"), fmt(m["weight"])]
                     for m in entry["members"]])
        for key in ("reason", "settings"):
            value = entry.get(key)
            if value:
                shown = ", ".join(f"{k} {fmt(v)}" for k, v in value.items()) if isinstance(value, dict) else str(value)
                console.print(f"  {key}: {escape(shown)}", highlight=False)


def _interval(cf: Any) -> str:
    """The held-out estimate in words: gain, interval, how it was computed."""
    if not isinstance(cf, dict) or cf.get("estimate") is None:
        return "held-out gain not estimated"
    text = f"held-out gain {cf['estimate']:+.4f}"
    if cf.get("low") is not None and cf.get("high") is not None:
        text += f", {cf.get('level', 0.95):.0%} interval [{cf['low']:+.4f}, {cf['high']:+.4f}]"
    if cf.get("repeats") and cf.get("folds"):
        text += f" ({cf['repeats']} x {cf['folds']}-fold)"
    return text


def remove(name: str = NameArg, registry: RegistryOpt = Path("checkpoints"),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."), as_json: JsonOpt = False) -> None:
    """Delete a saved ensemble (its members stay in the registry)."""
    reg = Registry(registry)
    if name not in reg.ensemble_names():   # a saved name, never a path out of the folder
        raise EnsembleError(f"no saved ensemble {name!r} in {reg.ensembles_dir} (`ensemble ensembles list` shows them)")
    if not yes and not typer.confirm(visible(f"remove saved ensemble {name}?"), default=False, err=as_json):
        (err if as_json else console).print("kept")
        raise typer.Exit(1)
    path = reg.remove_ensemble(name)
    if as_json:
        print_json({"removed": name, "path": str(path)})
        return
    console.print(f"removed ensemble {escape(name)} ({escape(str(path))})")
