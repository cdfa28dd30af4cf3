"""Modeling: from course text to a multitask model's outputs.

Files, in flow order:

``config``
    :class:`ModelConfig`, the architectures and the file names of a model folder (no torch).
``bases``
    where a base encoder comes from: a hub name, a local folder, the ``minilm`` stand-in, random.
``batches``
    token batches: each split tokenised once, cut into length-bucketed batches.
``model``
    the multitask model: shared trunk, per-task branches, heads; saved as safetensors.
``kernels``
    patches that make torch and transformers faster at inference, each a context manager.
``infer``
    batched inference, the one path for dev scores, registration, ``predict`` and ``bench``.
"""
from .. import lazy_names

FILES = ("config", "bases", "batches", "model", "kernels", "infer")
__all__ = ["ModelConfig", "ARCHITECTURES", "load_base", "resolve_base", "encode", "MultitaskModel", "load_model",
           "save_model", "predict_split", "pick_device"]
__getattr__ = lazy_names(__name__, {"ModelConfig": "config", "ARCHITECTURES": "config", "load_base": "bases",
                                    "resolve_base": "bases", "encode": "batches", "MultitaskModel": "model",
                                    "load_model": "model", "save_model": "model", "predict_split": "infer",
                                    "pick_device": "infer"})
