"""Every JSON document the tool reads, as a typed model, and the one reader that checks it.

A document a user can edit (or damage) is read here, in one place: its bytes bounded in size and
nesting depth before ``json`` parses them (:func:`load_json`), then checked by its model
(:func:`check`): types (no coercion: ``"3"`` is not 3, ``true`` is not 1), finite numbers, known
keys, lengths. Any bytes give either the checked document or one :class:`EnsembleError` of one
line naming the file and the field path, what it holds and what was expected::

    runs/ab12/record.json: epochs[3].dev.sst: expected a number, got 'fast'

The models (pydantic v2; no torch):

==========================  ===========================================  ========================
model                       document                                     unknown keys
==========================  ===========================================  ========================
:class:`CandidateManifest`  ``<registry>/<id>/candidate.json``           allowed at the top only
:class:`SavedEnsemble`      ``<registry>/ensembles/<name>.json``         allowed in ``tasks.<t>``
:class:`RunRecord`          ``<registry>/runs/<run>/record.json``        refused
:class:`CheckpointState`    ``runs/<run>/checkpoint/state.json``         refused
:class:`PretrainState`      ``<out>/checkpoint/state.json`` (pretrain)   refused
:class:`RegistryRecord`     ``<registry>/registry.json``                 refused
:class:`PredictStamp`       ``<out>/.ensemble-stamp.json`` (predict)     allowed at the top
:class:`SubmissionManifest` ``MANIFEST.json`` inside a submission zip    refused
==========================  ===========================================  ========================
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .files import read_input
from .errors import EnsembleError, shown
from .tasks import TASKS, is_plain_id

MAX_DEPTH = 32                 # deeper than any document the tool writes (6 levels at most)
MAX_BYTES = 64 * 1024 * 1024   # a document larger than this is not one the tool wrote
M = TypeVar("M", bound=BaseModel)


# -- the reader ----------------------------------------------------------------------------------
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_+-]{1,40}")


def nesting_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in the JSON text ``raw`` (strings skipped)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    for b in _BRACKETS.findall(_STRINGS.sub(b'""', raw)):
        depth += 1 if b in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


def value_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed value (iteratively: any depth is measured)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, d = todo.pop()
        if isinstance(v, (list, dict)):
            deepest = max(deepest, d)
            todo.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def load_json(path: Path | str, raw: bytes | None = None, what: str = "a document the tool writes") -> Any:
    """The JSON value in ``path`` (or its bytes ``raw``): read, bounded (size, nesting depth), parsed;
    an error naming the file for anything else."""
    if raw is None:
        try:
            raw = read_input(path, MAX_BYTES)   # a FIFO or a folder refused, never waited on
        except OSError as e:
            raise EnsembleError(f"{path}: cannot read ({e.strerror or e}); expected {what}") from None
    if len(raw) > MAX_BYTES:
        raise EnsembleError(f"{path}: more than {MAX_BYTES:,} bytes; expected {what}")
    if nesting_depth(raw) > MAX_DEPTH:
        raise EnsembleError(f"{path}: nested deeper than {MAX_DEPTH} levels; expected {what}")
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:   # UnicodeDecodeError is a ValueError
        raise EnsembleError(f"{path}: not valid JSON ({str(e).splitlines()[0]}); expected {what}") from None


def field_path(loc: tuple) -> str:
    """``("epochs", 3, "dev", "sst")`` -> ``epochs[3].dev.sst`` (odd keys quoted)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (a key)"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{shown(part)}]"
    return out or "(the document)"


_EXPECTED = {"float_type": "a number", "int_type": "an integer", "string_type": "a string", "bool_type": "true or false",
             "dict_type": "an object", "model_type": "an object", "list_type": "a list", "int_from_float": "an integer",
             "finite_number": "a finite number", "none_required": "null", "model_attributes_type": "an object"}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def describe(error: dict) -> str:
    """One pydantic error as ``<field path>: expected ..., got ...``."""
    kind, ctx, where = error["type"], error.get("ctx") or {}, field_path(error["loc"])
    got = f", got {shown(error['input'])}"
    if kind == "missing":
        return f"{where}: missing (a required field)"
    if kind == "extra_forbidden":
        return f"{where}: unknown field (holding {shown(error['input'])}); not a field of this document"
    if kind in _EXPECTED:
        return f"{where}: expected {_EXPECTED[kind]}{got}"
    if kind in _BOUNDS:
        return f"{where}: expected a number {_BOUNDS[kind]} {list(ctx.values())[0]}{got}"
    if kind == "literal_error":
        return f"{where}: expected {ctx.get('expected')}{got}"
    if kind in ("too_short", "too_long"):
        bound = f"at least {ctx.get('min_length')}" if kind == "too_short" else f"at most {ctx.get('max_length')}"
        return f"{where}: expected {bound} entries{got}"
    if kind in ("value_error", "assertion_error"):
        said = ctx.get("error", error["msg"])
        return f"{where}: {said}" if error["loc"] and not str(said).startswith(where) else str(said)
    return f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}{got}"


def problem(model: type[M], doc: Any) -> str | None:
    """Why ``doc`` is not a ``model`` (its first error, ``field: expected ...``), else None."""
    try:
        model.model_validate(doc)
    except ValidationError as e:
        errors = e.errors(include_url=False)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return describe(errors[0]).replace("\n", " ") + more
    except RecursionError:
        return f"nested deeper than {MAX_DEPTH} levels"
    return None


def check(path: Path | str, model: type[M], doc: Any) -> M:
    """``doc`` (read from ``path``) as a ``model``; else one error naming the file and the field."""
    try:
        return model.model_validate(doc)
    except (ValidationError, RecursionError):
        raise EnsembleError(f"{path}: {problem(model, doc)}") from None


def read(path: Path | str, model: type[M], what: str, raw: bytes | None = None) -> tuple[M, Any]:
    """The document at ``path`` checked by ``model``: the model and the checked JSON value."""
    doc = load_json(path, raw, what)
    return check(path, model, doc), doc


# -- shared pieces -------------------------------------------------------------------------------
class Strict(BaseModel):
    """No coercion, no NaN or infinity, no unknown keys."""
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", frozen=True)


class Open(Strict):
    """A part of a document that may carry fields of newer versions (those declared are still checked)."""
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="allow", frozen=True)


TaskName = Literal["sst", "para", "sts"]
assert set(TaskName.__args__) == set(TASKS)   # type: ignore[attr-defined]
Split = Literal["dev", "test"]
Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


def _scalar(v: Any) -> Any:
    if v is not None and type(v) not in (int, float, bool, str) or type(v) is float and v - v != 0:
        raise ValueError(f"expected a finite number, true or false, a string or null, got {shown(v)}")
    return v


Scalar = Annotated[Any, AfterValidator(_scalar)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


def _plain_id(value: str) -> str:
    """A candidate id that can name a folder (the rule of ``registry.candidate.is_plain_name``)."""
    if not is_plain_id(value) or any(s in value for s in ("/", "\\", "..")) or len(value) > 200:
        raise ValueError(f"expected a plain candidate id, got {shown(value)}")
    return value


# -- a training run's record (registry/runs.py) --------------------------------------------------
class RunEpoch(Strict):
    epoch: Count
    train_loss: dict[TaskName, float]
    dev: dict[TaskName, float]
    lr: float
    seconds: Seconds
    tokens: Count
    tokens_per_second: Seconds
    candidate: Optional[Name] = None
    best_for: list[TaskName] = []


class SearchTrial(Strict):
    study: str = Field(min_length=1, max_length=200)
    trial: Count


class RunRecord(Strict):
    format: Literal["ensemble-run/1"]
    run_id: Name
    name: Optional[str] = None
    fingerprint: Optional[str] = None
    config: dict[str, Any] = {}
    data: dict[str, str] = {}
    device: Optional[str] = None
    precision: Optional[str] = None
    parameters: Optional[Count] = None
    status: Literal["running", "complete", "stopped", "pruned", "failed"] = "running"
    started: Optional[str] = None
    finished: Optional[str] = None
    epochs: list[RunEpoch]
    candidates: list[Name] = []
    search: Optional[SearchTrial] = None     # a search's trial that trained the run (ensemble search)
    pruned_at: Optional[Count] = None        # the epoch after which the search's pruner stopped it
    error: Optional[str] = Field(default=None, max_length=10_000)   # why a failed run failed (its first line)

    @field_validator("config")
    @classmethod
    def _scalars(cls, config: dict[str, Any]) -> dict[str, Any]:
        for key, value in config.items():
            if isinstance(value, dict) or isinstance(value, float) and value != value or value in (float("inf"),
                                                                                                  float("-inf")):
                raise ValueError(f"config.{key}: expected a finite number, a string, a list or null, got {shown(value)}")
        return config


# -- the per-epoch resume checkpoint (training/checkpoint.py) ------------------------------------
class Loop(Strict):
    epoch: Count
    step: Count
    best: dict[TaskName, Optional[float]]
    best_mean: Optional[float]
    since_best: Count
    stopped: bool
    epochs: list[RunEpoch]


class Rng(Strict):
    python: list[Any] = Field(min_length=3, max_length=3)
    numpy: list[Any] = Field(min_length=4, max_length=4)

    @field_validator("python")
    @classmethod
    def _python(cls, v: list[Any]) -> list[Any]:
        version, internal, gauss = v
        if version != 3 or type(version) is not int:
            raise ValueError(f"expected Python's random state version 3, got {shown(version)}")
        if not (isinstance(internal, list) and len(internal) == 625
                and all(type(x) is int and 0 <= x < 2 ** 32 for x in internal) and internal[-1] <= 624):
            raise ValueError("expected 625 integers in [0, 2**32) (the Mersenne Twister's state)")
        if gauss is not None and type(gauss) is not float:
            raise ValueError(f"expected a number or null (the cached Gaussian), got {shown(gauss)}")
        return v

    @field_validator("numpy")
    @classmethod
    def _numpy(cls, v: list[Any]) -> list[Any]:
        kind, pos, has_gauss, cached = v
        if kind != "MT19937" or type(pos) is not int or not 0 <= pos <= 624 or has_gauss not in (0, 1) \
                or type(has_gauss) is not int or type(cached) not in (int, float) or cached != cached:
            raise ValueError(f"expected [\"MT19937\", position 0..624, 0 or 1, a number], got {shown(v)}")
        return v


class CheckpointState(Strict):
    loop: Loop
    optimizer_scalars: dict[Annotated[str, Field(pattern=r"^[0-9]{1,9}$")], dict[str, Scalar]]
    rng: Rng
    scaler: dict[str, Scalar] = {}


# -- a pretraining run's checkpoint (training/mlm_checkpoint.py) ---------------------------------
class PretrainState(Strict):
    step: Count
    settings: dict[str, Any]
    config: dict[str, Any] = {}
    losses: list[float] = []
    resumed: list[Count] = []
    perplexity_before: Optional[float] = None
    head: Optional[Literal["fresh", "pretrained"]] = None
    head_missing_keys: Optional[list[str]] = None
    seconds: Seconds = 0.0
    optimizer_scalars: dict[Annotated[str, Field(pattern=r"^[0-9]{1,9}$")], dict[str, Scalar]] = {}


# -- a saved ensemble (registry/saved.py) --------------------------------------------------------
CandidateId = Annotated[str, Field(min_length=1)]
Weight = Annotated[float, Field(gt=0, le=1e9)]   # bounded: numpy sums them (a 10**30 integer is no float64)
Weights = Annotated[dict[CandidateId, Weight], Field(min_length=1)]


class Settings(Strict):
    """A selection mode's settings (``selection.select``'s keywords)."""
    steps: Optional[Annotated[int, Field(ge=1, le=100_000)]] = None
    bags: Optional[Annotated[int, Field(ge=1, le=10_000)]] = None
    fraction: Optional[Annotated[float, Field(gt=0, le=1)]] = None
    seed: Optional[Annotated[int, Field(ge=0, lt=2 ** 32)]] = None


class Interval(Strict):
    """The held-out estimate of the ensemble's gain over the best single candidate."""
    method: Optional[str] = None
    level: Optional[Annotated[float, Field(gt=0, lt=1)]] = None
    folds: Optional[Count] = None
    repeats: Optional[Count] = None
    df: Optional[float] = None
    seed: Optional[int] = None
    estimate: Optional[float] = None
    low: Optional[float] = None
    high: Optional[float] = None

    @model_validator(mode="after")
    def _bounds(self) -> "Interval":
        if self.estimate is not None and (self.low is None or self.high is None):
            raise ValueError("an estimate needs its low and high bounds (numbers)")
        return self


class SelectedSystem(Strict):
    members: list[CandidateId] = []
    weights: Weights
    dev_score: Optional[float] = None


class EnsembleTask(Open):
    """One task's saved system; fields of newer versions (e.g. per-system estimates) are kept."""
    members: Optional[list[CandidateId]] = None
    weights: Weights
    dev_score: Optional[float] = None
    prediction_sha256: dict[CandidateId, dict[Split, str]] = {}
    system: Optional[str] = None
    expected_to_beat_single: Optional[bool] = None
    verdict: Optional[str] = None
    reason: Optional[str] = None
    settings: Settings = Settings()
    interval: Optional[Interval] = None
    selected: Optional[SelectedSystem] = None

    @field_validator("members", "weights", "prediction_sha256")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        for cid in v or ():
            _plain_id(cid)
        return v


class SummaryRow(Strict):
    system: str
    parameters: Optional[Count] = None
    dev: dict[TaskName, Optional[float]] = {}
    mean_dev: Optional[float] = None
    heldout: Optional[dict[TaskName, Optional[float]]] = None
    mean_heldout: Optional[float] = None
    test: dict[TaskName, Optional[float]] = {}


class SavedEnsemble(Strict):
    name: Name
    created: Optional[str] = None
    mode: Optional[str] = None
    sample: bool = False
    data: dict[str, str] = {}
    tasks: Annotated[dict[TaskName, EnsembleTask], Field(min_length=1)]
    summary: list[SummaryRow] = []


# -- a candidate's manifest (registry/manifest.py) -----------------------------------------------
def _plain_rel(rel: str) -> str:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or ".." in parts or "" in parts or "\0" in rel:
        raise ValueError(f"files: path {shown(rel)} is not a plain relative path inside the folder")
    return rel


def _finite(v: Any, where: str) -> None:
    if isinstance(v, float) and v - v != 0:
        raise ValueError(f"{where}: expected a finite number or null, got {shown(v)}")
    for k, x in (v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()):
        _finite(x, f"{where}.{k}")


class StoredFileRecord(Strict):
    sha256: str
    size: Count


class PredictionEntry(Strict):
    file: str
    rows: Optional[Count] = None
    data_file: Optional[str] = None
    data_sha256: Optional[str] = None

    @field_validator("data_file")
    @classmethod
    def _plain_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and (v in ("", ".", "..") or "/" in v or "\\" in v or "\0" in v):
            raise ValueError(f"expected a course file's plain name, got {shown(v)}")
        return v


class ModelRecord(Open):
    base: Optional[str] = None


class TrainingRecord(Open):
    config: Optional[dict[str, Any]] = None
    run_id: Optional[str] = None
    epoch: Optional[Count] = None
    fingerprint: Optional[str] = None
    run_complete: bool = False
    best_for: list[TaskName] = []
    base_provenance: Optional[dict[str, Any]] = None


class CandidateManifest(Open):
    """Fields a reader relies on; others (``source``, ``precision``, ...) are kept as written,
    vouched for by the seal."""
    id: Optional[str] = None
    format: Optional[str] = None
    seal: Optional[str] = None
    name: Optional[str] = None
    kind: Optional[str] = None
    architecture: Optional[str] = None
    created: Optional[str] = None
    tasks: list[TaskName] = []
    parameters: Optional[Count] = None
    model: Optional[ModelRecord] = None
    training: Optional[TrainingRecord] = None
    files: dict[Annotated[str, Field(min_length=1)], StoredFileRecord] = {}
    predictions: dict[TaskName, dict[Split, PredictionEntry]] = {}
    metrics: dict[str, dict[str, Any]] = {}

    @field_validator("files")
    @classmethod
    def _paths(cls, files: dict[str, Any]) -> dict[str, Any]:
        for rel in files:
            _plain_rel(rel)
        return files

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for task, values in metrics.items():
            _finite(values, f"metrics.{task}")
            dev = values.get("dev")
            if dev is not None and (type(dev) not in (int, float)):
                raise ValueError(f"metrics.{task}.dev: expected a finite number or null, got {shown(dev)}")
        return metrics

    @model_validator(mode="after")
    def _prediction_files(self) -> "CandidateManifest":
        for task, splits in self.predictions.items():
            for split, entry in splits.items():
                want = f"predictions/{task}-{split}.csv"
                if entry.file != want:
                    raise ValueError(f"predictions.{task}.{split}.file: expected {want!r}, got {shown(entry.file)}")
                if want not in self.files:
                    raise ValueError(f"predictions.{task}.{split}.file: {want!r} is not among the manifest's files")
        return self


# -- the registry's data record (registry/home.py) ---------------------------------------------------
class RegistryRecord(Strict):
    format: Literal["ensemble-registry"]
    data: Annotated[str, Field(min_length=1)]
    sample: bool = False
    files: dict[str, str]

    @field_validator("files")
    @classmethod
    def _names(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
                raise ValueError(f"files: {shown(name)} is not a course file's plain name")
        return files


# -- predict's stamp (leaderboard/validate.py) and a submission's MANIFEST.json ---------------------
class Replacing(Strict):
    ensemble: Optional[str] = None
    files: dict[str, str] = {}


class PredictStamp(Open):
    format: Literal["ensemble-leaderboard-stamp"]
    state: Literal["writing", "complete"] = "complete"
    files: dict[str, str]
    data: Optional[dict[str, str]] = None
    ensemble: Optional[str] = None
    ensemble_created: Optional[str] = None
    created: Optional[str] = None
    sample: bool = False
    tasks: Optional[dict[TaskName, dict[str, Any]]] = None
    replacing: Optional[Replacing] = None


class SubmittedFile(Strict):
    sha256: str
    rows: Count
    bytes: Count


class SubmittedEnsemble(Open):
    name: Optional[str] = None
    verified: Optional[bool] = None
    sample_data: Optional[bool] = None


class SubmissionManifest(Strict):
    format: Literal["cs224n-multitask-leaderboard-submission"]
    tool: Optional[str] = None
    tool_version: Optional[str] = None
    created: Optional[str] = None
    mean_dev: Optional[float] = None
    message: Optional[Annotated[str, Field(max_length=10_000)]] = None
    ensemble: Optional[SubmittedEnsemble] = None
    predictions: dict[str, SubmittedFile] = {}
    code_files: list[str] = []
