"""Multitask models over a BERT-family encoder: trunk, per-task branches, heads.

The encoder's own modules (embeddings, layers, pooler) come from ``transformers.AutoModel``;
this file only decides which of them are shared and which are copied per task:

=================  ==========================================================================
``multi``          one encoder shared by every task
``cerberus``       bottom N-K layers shared, top K layers (and the pooler) copied per task
``triple``         one independent encoder per task
``static``         the fine-tuned shared encoder's [CLS] concatenated with a frozen pretrained one's
``multi+triple``   a shared encoder's [CLS] concatenated with the task's own encoder's
=================  ==========================================================================

A model is rebuilt from its :class:`ModelConfig` alone (the encoder's config is stored inside it),
so a saved candidate loads offline without the base weights or the training code's defaults.
"""
from __future__ import annotations

import copy
import errno
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.masking_utils import create_bidirectional_mask

from .bases import encoder_parts
from .config import ARCHITECTURES, CONFIG_FILE, WEIGHTS_FILE, ModelConfig
from .. import documents
from ..errors import EnsembleError, shown
from ..files import check_safetensors, refuse_pickles
from ..tasks import TASKS


def encoder_from_config(encoder: dict[str, Any]) -> nn.Module:
    """A randomly initialised encoder of the stored architecture (weights are loaded after)."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not isinstance(encoder, dict):
        raise EnsembleError(f"stored encoder config is {type(encoder).__name__}; expected a JSON object")
    d = dict(encoder)
    model_type = d.pop("model_type", None)
    if not model_type:
        raise EnsembleError("stored encoder config lacks model_type")
    if "auto_map" in d or not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise EnsembleError(f"stored encoder config: model_type {shown(model_type)} is not a transformers "
                            "architecture (custom code is never run); expected e.g. 'bert'")
    try:
        cfg = AutoConfig.for_model(model_type, **d)
        return AutoModel.from_config(cfg, attn_implementation="sdpa")
    except (ValueError, TypeError, KeyError, AttributeError, StrictDataclassError) as e:
        raise EnsembleError(f"stored encoder config ({model_type}) is not valid: {str(e).splitlines()[0][:200]}") from e


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


Parts = tuple[nn.Module, nn.ModuleList, nn.Module]   # (embeddings, layer stack, pooler) of the base
Streams = dict[str, list[tuple[str, list[str], str]]]


def _multi(m: "MultitaskModel", parts: Parts, tasks: tuple[str, ...]) -> Streams:
    m.add_encoder("shared", parts, fresh=False)
    return {t: [("shared", ["shared"], "shared")] for t in tasks}


def _cerberus(m: "MultitaskModel", parts: Parts, tasks: tuple[str, ...]) -> Streams:
    emb, layers, pooler = parts
    n, k = len(layers), m.config.task_layers
    if k == 0:
        return _multi(m, parts, tasks)
    m.embeddings["shared"] = emb
    m.stacks["shared"] = nn.ModuleList(list(layers)[: n - k])
    m.stack_depth["shared"] = 0
    for t in tasks:
        m.stacks[t] = copy.deepcopy(nn.ModuleList(list(layers)[n - k:]))
        m.stack_depth[t] = n - k
        m.poolers[t] = copy.deepcopy(pooler)
    return {t: [("shared", ["shared", t], t)] for t in tasks}


def _triple(m: "MultitaskModel", parts: Parts, tasks: tuple[str, ...]) -> Streams:
    for i, t in enumerate(tasks):
        m.add_encoder(t, parts, fresh=i > 0)
    return {t: [(t, [t], t)] for t in tasks}


def _static(m: "MultitaskModel", parts: Parts, tasks: tuple[str, ...]) -> Streams:
    m.add_encoder("frozen", parts, fresh=True)
    m.add_encoder("shared", parts, fresh=False)
    m.frozen = {"frozen"}
    return {t: [("shared", ["shared"], "shared"), ("frozen", ["frozen"], "frozen")] for t in tasks}


def _multi_triple(m: "MultitaskModel", parts: Parts, tasks: tuple[str, ...]) -> Streams:
    m.add_encoder("shared", parts, fresh=True)
    for i, t in enumerate(tasks):
        m.add_encoder(t, parts, fresh=i > 0)
    # the first task's encoder reused the base's modules; "shared" is a fresh copy
    return {t: [("shared", ["shared"], "shared"), (t, [t], t)] for t in tasks}


_LAYOUTS = {"multi": _multi, "cerberus": _cerberus, "triple": _triple, "static": _static,
            "multi+triple": _multi_triple}


class MultitaskModel(nn.Module):
    """Streams of (embeddings, layer stacks, pooler) per task, concatenated into the task's head.

    ``streams[task]`` lists the streams of the task: each is (embeddings key, [layer-stack keys],
    pooler key) into the module dicts. One batch holds one task, so a shared trunk is run once.
    The layout of each architecture is built by its function in ``_LAYOUTS``.
    """

    def __init__(self, config: ModelConfig, base: nn.Module):
        super().__init__()
        self.config = config
        self.encoder_config = base.config
        emb, layers, pooler = encoder_parts(base, config.base or "base")
        n = len(layers)
        self.n_layers = n
        k = config.task_layers
        if config.architecture == "cerberus" and not 0 <= k <= n:
            raise EnsembleError(f"--task-layers {k}: expected 0..{n} for an encoder with {n} layers")
        self.embeddings = nn.ModuleDict()
        self.stacks = nn.ModuleDict()
        self.poolers = nn.ModuleDict()
        # depth of the first layer of each stack (for layer-wise learning-rate decay)
        self.stack_depth: dict[str, int] = {}
        self.frozen: set[str] = set()
        parts = (emb, layers, pooler if pooler is not None else _Identity())
        self.streams: Streams = _LAYOUTS[config.architecture](self, parts, config.tasks)
        for key in self.frozen:
            for m in (self.embeddings[key], self.stacks[key], self.poolers[key]):
                m.requires_grad_(False)
        hidden = self.encoder_config.hidden_size
        self.heads = nn.ModuleDict({
            t: nn.Sequential(nn.Dropout(config.head_dropout), nn.Linear(hidden * len(self.streams[t]), TASKS[t].n_outputs))
            for t in config.tasks
        })

    def add_encoder(self, key: str, parts: Parts, fresh: bool) -> None:
        """A whole encoder under ``key``: the base's modules, or deep copies of them if ``fresh``."""
        c = copy.deepcopy if fresh else (lambda m: m)
        emb, layers, pooler = parts
        self.embeddings[key] = c(emb)
        self.stacks[key] = c(layers)
        self.poolers[key] = c(pooler)
        self.stack_depth[key] = 0

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_base(cls, config: ModelConfig, base_model: nn.Module) -> "MultitaskModel":
        config.encoder = base_model.config.to_dict()
        return cls(config, base_model)

    @classmethod
    def from_config(cls, config: ModelConfig) -> "MultitaskModel":
        return cls(config, encoder_from_config(config.encoder))

    def train(self, mode: bool = True) -> "MultitaskModel":
        super().train(mode)
        for key in self.frozen:  # a frozen encoder never uses dropout
            for m in (self.embeddings[key], self.stacks[key], self.poolers[key]):
                m.eval()
        return self

    def set_gradient_checkpointing(self, on: bool = True) -> None:
        """transformers' own gradient checkpointing on every encoder layer of every stack (all
        architectures): each layer's activations are recomputed in the backward pass instead of
        kept. Non-reentrant ``torch.utils.checkpoint``, which restores the RNG state for the
        recomputation (same dropout masks) and supports ``torch.autograd.grad`` (SMART's ascent)."""
        from functools import partial

        from torch.utils.checkpoint import checkpoint
        from transformers.modeling_layers import GradientCheckpointingLayer

        func = partial(checkpoint, use_reentrant=False)
        for stack in self.stacks.values():
            for layer in stack.modules():
                if isinstance(layer, GradientCheckpointingLayer):
                    layer.gradient_checkpointing = on
                    layer._gradient_checkpointing_func = func

    # -- forward ------------------------------------------------------------------------------
    def embed(self, task: str, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> list[torch.Tensor]:
        """The embedding outputs (positions and LayerNorm applied) of each stream of the task."""
        return [
            self.embeddings[e](input_ids=input_ids, token_type_ids=token_type_ids)
            for e, _, _ in self.streams[task]
        ]

    def forward_embedded(self, task: str, embedded: list[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        """Head outputs from embedding outputs (SMART perturbs these, never the token ids)."""
        mask = create_bidirectional_mask(
            config=self.encoder_config, inputs_embeds=embedded[0], attention_mask=attention_mask
        )
        pooled = []
        for h, (_, stack_keys, pooler_key) in zip(embedded, self.streams[task]):
            for key in stack_keys:
                for layer in self.stacks[key]:
                    h = layer(h, attention_mask=mask)
                    if isinstance(h, tuple):
                        h = h[0]
            pooled.append(self.poolers[pooler_key](h))
        x = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=-1)
        return self.heads[task](x)

    def forward(self, task: str, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_embedded(task, self.embed(task, input_ids, token_type_ids), attention_mask)

    # -- bookkeeping --------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def parameter_roles(self):
        """Yield (name, parameter, role, depth) for trainable parameters.

        role: ``embeddings`` | ``layer`` | ``pooler`` | ``head``; depth: the encoder layer index
        (0 = bottom) for ``layer``, else None.
        """
        for key, emb in self.embeddings.items():
            if key not in self.frozen:
                for name, p in emb.named_parameters(prefix=f"embeddings.{key}"):
                    yield name, p, "embeddings", None
        for key, stack in self.stacks.items():
            if key in self.frozen:
                continue
            for i, layer in enumerate(stack):
                for name, p in layer.named_parameters(prefix=f"stacks.{key}.{i}"):
                    yield name, p, "layer", self.stack_depth[key] + i
        for key, pooler in self.poolers.items():
            if key not in self.frozen:
                for name, p in pooler.named_parameters(prefix=f"poolers.{key}"):
                    yield name, p, "pooler", None
        for name, p in self.heads.named_parameters(prefix="heads"):
            yield name, p, "head", None


def outputs_to_predictions(task: str, outputs: torch.Tensor) -> torch.Tensor:
    """Unrounded predictions from head outputs: class probabilities, paraphrase probability, raw score."""
    kind = TASKS[task].kind
    outputs = outputs.float()
    if kind == "classes":
        return torch.softmax(outputs, dim=-1)
    if kind == "binary":
        return torch.sigmoid(outputs)
    return outputs


def task_loss(task: str, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The task's loss in fp32 (fp64 for an fp64 model, as the exactness tests use)."""
    kind = TASKS[task].kind
    outputs = outputs if outputs.dtype == torch.float64 else outputs.float()
    if kind == "classes":
        return nn.functional.cross_entropy(outputs, labels.long())
    if kind == "binary":
        return nn.functional.binary_cross_entropy_with_logits(outputs[:, 0], labels.to(outputs.dtype))
    return nn.functional.mse_loss(outputs[:, 0], labels.to(outputs.dtype))


# -- saving and loading -------------------------------------------------------------------------


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """The one safetensors writer (weights, optimizer state, checkpoints): one metadata key, so
    identical tensors give identical bytes (with several, the header's order varies per process);
    a full disk raises ENOSPC as an OSError (safetensors' own error is none), for files.disk_full."""
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
    except SafetensorError as e:
        if "os error 28" in str(e):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path`` on the CPU, its header checked first
    (:func:`ensemble.files.check_safetensors`: truncated, empty, pickled or damaged files are
    refused naming the file before safetensors opens them)."""
    check_safetensors(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise EnsembleError(f"{path}: unreadable safetensors file ({str(e).splitlines()[0] if str(e) else e}); "
                            "the file is damaged") from None


def save_model(model: MultitaskModel, tokenizer, directory: Path) -> list[Path]:
    """Write weights (safetensors), the model config and the tokenizer files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(model.state_dict(), directory / WEIGHTS_FILE)
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n")
    tokenizer.save_pretrained(str(directory))
    return sorted(p for p in directory.rglob("*") if p.is_file())


def load_model(directory: Path, device: str | torch.device = "cpu"):
    """Rebuild a saved model and its tokenizer offline from ``directory``."""
    directory = Path(directory)
    refuse_pickles(directory)
    cfg_path = directory / CONFIG_FILE
    if not cfg_path.exists():
        raise EnsembleError(f"{directory}: no {CONFIG_FILE}; expected a model saved by ensemble")
    check_safetensors(directory / WEIGHTS_FILE)   # before anything is built: a damaged file fails at once
    try:
        config = ModelConfig.from_dict(documents.load_json(cfg_path, what="a model config saved by ensemble"))
        model = MultitaskModel.from_config(config)
    except (ValueError, TypeError) as e:
        raise EnsembleError(f"{cfg_path}: not a valid model config ({e})") from e
    except EnsembleError as e:
        raise EnsembleError(f"{cfg_path}: {e}") from e
    state = load_tensors(directory / WEIGHTS_FILE)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EnsembleError(
            f"{directory / WEIGHTS_FILE}: weights do not match the config "
            f"(missing {len(missing)} e.g. {missing[:2]}, unexpected {len(unexpected)} e.g. {unexpected[:2]})"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(directory), use_fast=True, local_files_only=True)
    return model.to(device).eval(), tokenizer
