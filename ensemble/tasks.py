"""The three tasks of the course's multitask project: files, labels, heads, metrics, output format.

Pure data, no torch: every stage imports its task facts from here, and checks task names here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import EnsembleError

SPLITS = ("train", "dev", "test")

# A number as the course files and the leaderboard files write one (no inf, nan, or ``1_0``).
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z")
# Characters that an id may not hold: the output format separates fields by " , " and whitespace.
BAD_ID_CHARS = frozenset(",\"' \t\n\r\x0b\x0c")


@dataclass(frozen=True)
class Task:
    name: str                 # "sst", "para", "sts"
    file_stem: str            # course file stem: "ids-sst", "quora", "sts"
    pair: bool                # sentence pair (cross-encoded) or single sentence
    label_column: str         # label column in train/dev files
    kind: str                 # "classes" (softmax over n_outputs), "binary" (1 logit), "regression"
    n_outputs: int            # head outputs and width of the cached prediction row
    label_min: float
    label_max: float
    metric: str               # "accuracy" or "pearson"
    output_header: str        # leaderboard header, byte for byte (without the newline)
    prediction_columns: tuple[str, ...]   # columns of the cached unrounded prediction files

    def file_name(self, split: str) -> str:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        suffix = "test-student" if split == "test" else split
        return f"{self.file_stem}-{suffix}.csv"

    def output_name(self, split: str) -> str:
        """Leaderboard file name, e.g. ``sst-dev-output.csv``."""
        return f"{self.name}-{split}-output.csv"


TASKS: dict[str, Task] = {
    "sst": Task(
        name="sst", file_stem="ids-sst", pair=False, label_column="sentiment", kind="classes",
        n_outputs=5, label_min=0, label_max=4, metric="accuracy",
        output_header="id \t Predicted_Sentiment ",
        prediction_columns=("p0", "p1", "p2", "p3", "p4"),
    ),
    "para": Task(
        name="para", file_stem="quora", pair=True, label_column="is_duplicate", kind="binary",
        n_outputs=1, label_min=0, label_max=1, metric="accuracy",
        output_header="id \t Predicted_Is_Paraphrase ",
        prediction_columns=("prob",),
    ),
    "sts": Task(
        name="sts", file_stem="sts", pair=True, label_column="similarity", kind="regression",
        n_outputs=1, label_min=0.0, label_max=5.0, metric="pearson",
        output_header="id \t Predicted_Similiary ",  # sic: the course's spelling
        prediction_columns=("score",),
    ),
}

TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name``; an unknown name is an error that lists the known ones."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise EnsembleError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}") from None


def is_plain_id(value: str) -> bool:
    """True for a non-empty id without commas, quotes or whitespace."""
    return bool(value) and BAD_ID_CHARS.isdisjoint(value)


def parse_tasks(text: str) -> tuple[str, ...]:
    """``"sst,sts"`` -> ``("sst", "sts")`` in canonical order; unknown names are an error."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise EnsembleError(f"--tasks: expected a comma-separated subset of {','.join(TASK_NAMES)}, got {text!r}")
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise EnsembleError(
            f"--tasks: unknown task {', '.join(map(repr, unknown))}; expected a subset of {','.join(TASK_NAMES)}"
        )
    return tuple(t for t in TASK_NAMES if t in names)
