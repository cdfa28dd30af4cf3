"""A search's study: Optuna's storage, samplers and pruners chosen by name, and the check that the
registry and the study agree (``ensemble verify``). Optuna is imported only when a study is opened.

The study lives in ``<registry>/search/studies.db`` (SQLite through Optuna's ``RDBStorage``) unless
``--storage URL`` names a database server (``postgresql://...``, ``mysql://...``) that several
machines share. A trial's link to its training run is two-way: the run's record carries
``"search": {"study", "trial"}`` (:mod:`ensemble.registry.runs`) and the trial its ``run_id``
(a user attribute), so either side can be checked against the other.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import EnsembleError
from ..registry.candidate import Problem
from ..registry.runs import read_runs

OPTUNA_INSTALL = 'pip install -e ".[search]"'
SAMPLERS = ("tpe", "random", "qmc")
PRUNERS = ("median", "hyperband", "halving", "none")
SEARCH_DIR = "search"
STUDIES_DB = "studies.db"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def require_optuna():
    """Optuna, or an error saying exactly what to install."""
    try:
        import optuna
    except ImportError:
        raise EnsembleError(f"ensemble search needs the optuna package; install it with `{OPTUNA_INSTALL}` (from the "
                            "source tree; `pip install \"optuna>=4\"` elsewhere)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def default_storage(root: Path) -> str:
    return f"sqlite:///{(Path(root) / SEARCH_DIR / STUDIES_DB).resolve()}"


def storage(root: Path, url: str | None = None):
    """Optuna's RDBStorage at ``url`` (default: the registry's SQLite file, made if absent)."""
    optuna = require_optuna()
    if url is None:
        (Path(root) / SEARCH_DIR).mkdir(parents=True, exist_ok=True)
    url = url or default_storage(root)
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:   # sqlalchemy's errors: a bad URL, a server not reached, a driver not installed
        raise EnsembleError(f"--storage {url}: cannot open the study database ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); expected an SQLAlchemy URL such as "
                            "sqlite:///path.db or postgresql://user@host/db") from None


def make_sampler(name: str, seed: int | None):
    optuna = require_optuna()
    if name not in SAMPLERS:
        raise EnsembleError(f"--sampler {name}: expected one of {', '.join(SAMPLERS)}")
    return {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
            "qmc": lambda: optuna.samplers.QMCSampler(seed=seed)}[name]()


def make_pruner(name: str, epochs: int):
    """A pruner over epochs 1..``epochs``: median (Optuna's default rule, after 2 finished trials),
    hyperband, successive halving, or none."""
    optuna = require_optuna()
    if name not in PRUNERS:
        raise EnsembleError(f"--pruner {name}: expected one of {', '.join(PRUNERS)}")
    return {"median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs),
            "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
            "none": lambda: optuna.pruners.NopPruner()}[name]()


def open_study(root: Path, name: str, space: dict[str, Any] | None, *, url: str | None = None, sampler: str = "tpe",
               pruner: str = "median", seed: int | None = None, epochs: int = 1, create: bool = True):
    """The study ``name`` (made if absent and ``create``); a study made from another space is refused.
    The sampler's seed is offset by the trials already there: a resumed search draws new points."""
    optuna = require_optuna()
    store = storage(root, url)
    names = [s.study_name for s in optuna.study.get_all_study_summaries(store)]
    if name not in names and not create:
        raise EnsembleError(f"study {name!r}: not in {url or default_storage(root)}; expected one of: "
                            f"{', '.join(names) or '(none yet: `ensemble search SPACE` makes one)'}")
    done = len(optuna.load_study(study_name=name, storage=store).trials) if name in names else 0
    study = optuna.create_study(study_name=name, storage=store, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(sampler, None if seed is None else seed + done),
                                pruner=make_pruner(pruner, epochs))
    if space is not None:
        kept = study.user_attrs.get("space")
        if kept is None:
            study.set_user_attr("space", space)
        elif json.dumps(kept["space"], sort_keys=True) != json.dumps(space["space"], sort_keys=True) or \
                json.dumps(kept["defaults"], sort_keys=True) != json.dumps(space["defaults"], sort_keys=True):
            raise EnsembleError(f"study {name!r} was made from another search space ({kept['path']}); expected the "
                                f"same [defaults] and [space] as then, or a new --name")
    return study


def studies(root: Path, url: str | None = None) -> list[str]:
    optuna = require_optuna()
    return [s.study_name for s in optuna.study.get_all_study_summaries(storage(root, url))]


def owner() -> dict[str, Any]:
    """This process, as a trial's user attributes name the process running it."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def stale(trial) -> bool:
    """A trial still RUNNING whose process is gone: run on this host by a process no longer alive
    (or by this very process number, reused), or never claimed by any."""
    host, pid = trial.user_attrs.get("host"), trial.user_attrs.get("pid")
    if host is None:
        return True
    if host != socket.gethostname():
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_searches(root: Path, url: str | None = None) -> list[Problem]:
    """The registry's runs against its studies: every finished trial has exactly one run record (or
    names the trial whose identical run it reused) whose status matches the trial's state, whose
    candidates exist; every run record of a search names a trial of its study."""
    root = Path(root)
    if url is None and not (root / SEARCH_DIR / STUDIES_DB).is_file():
        return []
    where = url or str(root / SEARCH_DIR / STUDIES_DB)
    try:
        optuna = require_optuna()
    except EnsembleError as e:
        return [Problem("search", where, str(e))]
    store = storage(root, url)
    records: dict[tuple[str, int], list[dict]] = {}
    for r in read_runs(root):
        if r.get("search"):
            records.setdefault((r["search"]["study"], r["search"]["trial"]), []).append(r)
    cands = {p.name for p in (root / "candidates").iterdir()} if (root / "candidates").is_dir() else set()
    problems: list[Problem] = []
    known = set()
    for summary in optuna.study.get_all_study_summaries(store):
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        for t in study.get_trials(deepcopy=False):
            known.add((summary.study_name, t.number))
            problems += _check_trial(summary.study_name, t, records.get((summary.study_name, t.number), []), cands)
    for (name, number), recs in sorted(records.items()):
        if (name, number) not in known:
            problems += [Problem(f"run {r['run_id']}", "record.json", f"names trial {number} of study {name!r}, which "
                                 f"is not in {where}") for r in recs]
    return problems


def _check_trial(name: str, t, recs: list[dict], cands: set[str]) -> list[Problem]:
    who = f"study {name} trial {t.number}"
    state = t.state.name
    if len(recs) > 1:
        return [Problem(who, "runs", f"{len(recs)} run records ({', '.join(r['run_id'] for r in recs)}); expected one")]
    if not recs:
        if state in ("COMPLETE", "PRUNED") and "same_as" not in t.user_attrs:
            return [Problem(who, "runs", f"{state.lower()} in the study, but no run record in the registry names it")]
        return []
    r = recs[0]
    expected = {"COMPLETE": ("complete", "stopped"), "PRUNED": ("pruned",), "FAIL": ("failed", "running"),
                "RUNNING": ("running", "complete", "stopped", "pruned")}.get(state, ())
    out = []
    if r["status"] not in expected:
        out.append(Problem(who, f"runs/{r['run_id']}/record.json", f"run status {r['status']!r}, but the trial is "
                           f"{state}; expected {' or '.join(expected)}"))
    if t.user_attrs.get("run_id") not in (None, r["run_id"]):
        out.append(Problem(who, "run_id", f"the trial names run {t.user_attrs['run_id']}, its record is {r['run_id']}"))
    missing = [c for c in r.get("candidates") or [] if c not in cands]
    if missing:
        out.append(Problem(who, f"runs/{r['run_id']}/record.json", f"candidates {', '.join(missing)} not in the registry"))
    return out


def search_views(root: Path) -> list[dict[str, Any]]:
    """Each study of the registry's own database, for ``ensemble report``: its trials' values in
    order (the optimisation history), the best so far, and the parameters' importances (:func:`_importances`).
    Empty where the registry has no searches or optuna is not installed."""
    if not (Path(root) / SEARCH_DIR / STUDIES_DB).is_file():
        return []
    try:
        optuna = require_optuna()
    except EnsembleError:
        return []
    store = storage(root)
    views = []
    for summary in optuna.study.get_all_study_summaries(store):
        study = optuna.load_study(study_name=summary.study_name, storage=store)
        trials = study.get_trials(deepcopy=False)
        points = [(t.number, max(t.intermediate_values.values(), default=t.value), t.state.name.lower())
                  for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        evaluator, importances = _importances(optuna, study)
        views.append({"study": summary.study_name, "trials": len(trials), "points": points,
                      "importances": importances, "evaluator": evaluator})
    return views


def _importances(optuna, study) -> tuple[str, dict[str, float] | None]:
    """The parameters' importances by Optuna's fANOVA (it needs scikit-learn), else by its PED-ANOVA;
    None where they cannot be computed (fewer than two complete trials, or no variation)."""
    try:
        import sklearn  # noqa: F401  (fANOVA's random forest)
        name, evaluator = "fANOVA", optuna.importance.FanovaImportanceEvaluator(seed=0)
    except ImportError:
        name, evaluator = "PED-ANOVA; fANOVA needs scikit-learn", optuna.importance.PedAnovaImportanceEvaluator()
    try:
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except (RuntimeError, ValueError, ImportError):   # too few complete trials, or a single distinct value
        return name, None
    return name, dict(found) if found else None
