"""File safety shared by every stage: no pickle weights, ever."""
from __future__ import annotations

from pathlib import Path

from .errors import EnsembleError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def refuse_pickles(directory: Path) -> None:
    """Raise if ``directory`` holds a pickle file: loading one can run arbitrary code."""
    for p in sorted(Path(directory).rglob("*")):
        if p.suffix.lower() in PICKLE_SUFFIXES:
            raise EnsembleError(
                f"{p}: pickle files are refused (loading them can run arbitrary code). Convert the "
                "weights to safetensors first, e.g. in Python: `from safetensors.torch import save_file; "
                "save_file(torch.load(PATH, weights_only=True), 'model.safetensors')` "
                "(for a transformers model: `AutoModel.from_pretrained(DIR).save_pretrained(DIR)`), "
                "then delete the pickle file."
            )
