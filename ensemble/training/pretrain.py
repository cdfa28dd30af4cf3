"""Further masked-language-model pretraining of an encoder on the tasks' own text.

``pretrain()`` continues BERT-style MLM training (:mod:`ensemble.training.mlm`: masking, head, loss) of a
base encoder on the sentences of the chosen tasks' training files (optionally also the unlabelled
dev and test inputs) and writes an encoder directory that ``ensemble train --base DIR`` accepts.

Method
------
* Sequences: one per example, encoded as the fine-tuning code encodes it: ``[CLS] s [SEP]`` for
  SST, ``[CLS] a [SEP] b [SEP]`` with token type ids for pairs. No next-sentence task.
* Determinism: the data order of an epoch is a pure function of ``(seed, epoch)``; the masks and
  the dropout of a step are a pure function of ``(seed, step)``. A run resumed from a checkpoint
  therefore reproduces the uninterrupted run exactly (same order, same masks, same dropout).
* Head: the base's own MLM head or a fresh one; the result, the provenance file and
  ``progress.note`` say which.
* Optimiser: AdamW, weight decay on weight matrices (not biases / LayerNorm), layer-wise
  learning rates as in fine-tuning (:func:`ensemble.training.finetune.param_groups`): the top encoder layer
  gets ``lr``, each lower layer ``lr`` times ``layer_decay`` once more, the embeddings one step
  below the bottom layer (``lr * layer_decay ** n_layers``; the word embeddings are tied to the
  head's decoder and get that rate), the rest of the MLM head ``lr``. Learning rate: linear
  warm-up over ``warmup_steps``, then constant (so a run can be extended with ``resume`` and
  still equal a longer uninterrupted run). Gradients clipped to ``max_grad_norm``.

Output (``out``)
----------------
``config.json``, ``model.safetensors`` (the ``*ForMaskedLM`` weights plus the base's pooler, which
MLM training does not use and transformers' MLM classes drop; loading with ``AutoModel`` strips
the model prefix and takes the trained encoder and the base's pooler), tokenizer files, and
``ensemble_pretrain.json`` (provenance, with the :class:`PretrainConfig`). ``out/checkpoint/``
holds the last checkpoint (:mod:`ensemble.training.mlm_checkpoint`). No pickle files are ever written.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import transformers

from ..modeling.batches import length_buckets, lengths_of, max_length_for, pad
from .. import documents
from ..errors import EnsembleError
from ..modeling.infer import pick_device
from .mlm import PERPLEXITY_SEED, Corpus, EvalTexts, Masker, MlmRoles, eval_texts, head_missing_keys, load_mlm
from .mlm import masking_provenance, mlm_loss_sum, perplexity, read_corpus
from ..modeling.config import PROVENANCE_FILE
from .config import PretrainConfig
from .mlm_checkpoint import checkpoint_to_resume, export, load_checkpoint_weights, load_optimizer, read_state
from .mlm_checkpoint import write_checkpoint
from ..modeling.bases import resolve_base
from ..progress import NULL, Progress
from ..tasks import TASK_NAMES, TASKS, parse_tasks
from .finetune import param_groups

BUCKET = 50  # length buckets of BUCKET batches, as in fine-tuning


@dataclass
class PretrainResult:
    out: Path
    base: str
    tasks: tuple[str, ...]
    steps: int                      # steps done in total (after this call)
    steps_run: int                  # steps run by this call
    resumed_from: int | None        # the checkpoint step this call started from, if resumed
    head: str                       # "pretrained" (the base's own MLM head) or "fresh"
    head_missing_keys: list[str]
    sequences: int                  # training sequences in the corpus
    epochs: float                   # passes over the corpus done in total
    data: dict[str, str]            # training file name -> sha256
    losses: list[float]             # per-step training loss, all steps done so far
    perplexity_before: float | None
    perplexity_after: float | None
    perplexity_texts: str | None    # what the perplexity was measured on
    perplexity_held_out: bool | None
    seconds: float                  # wall time of this call's training steps
    device: str
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float | None:
        tail = self.losses[-50:]
        return float(np.mean(tail)) if tail else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["out"] = str(self.out)
        d["tasks"] = list(self.tasks)
        d["final_loss"] = self.final_loss
        return d


# -- pure functions of the seed ---------------------------------------------------------------
def step_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed for (seed, step, stream); streams: 1 masks, 2 dropout."""
    return int(np.random.SeedSequence([int(seed), int(step), int(stream)]).generate_state(2, np.uint64)[0] >> 1)


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches (row indices) of one epoch: :func:`ensemble.modeling.batches.length_buckets` drawn from
    ``(seed, epoch)``. Every row appears exactly once; there are always ``ceil(n / batch_size)``."""
    return length_buckets(lengths, batch_size, np.random.default_rng([int(seed), int(epoch)]), BUCKET)


# -- the run ----------------------------------------------------------------------------------
@dataclass
class _Run:
    """What the loop carries: the model and its data, the optimiser and the history so far."""
    mlm: Any
    tokenizer: Any
    pooler_sd: dict[str, torch.Tensor]
    head: str
    head_missing: list[str]
    corpus: Corpus
    masker: Masker
    max_len: int
    settings: dict[str, Any]
    optimizer: torch.optim.Optimizer
    losses: list[float] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    start_step: int = 0
    ppl_before: float | None = None
    prev_seconds: float = 0.0

    def state(self, step: int, seconds: float, cfg: PretrainConfig) -> dict[str, Any]:
        return {"step": step, "settings": self.settings, "config": cfg.to_dict(), "losses": self.losses,
                "resumed": self.resumed, "perplexity_before": self.ppl_before, "head": self.head,
                "head_missing_keys": self.head_missing, "seconds": seconds}


def _optimizer(mlm, cfg: PretrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`ensemble.training.finetune.param_groups`, eps 1e-6 and the per-tensor loop (not
    ``train.make_optimizer``: its eps 1e-8 and fused kernel would change pretraining's numbers).
    ``base_lr``: each group's rate before the warm-up scales it."""
    groups = [{**{k: v for k, v in g.items() if k != "names"}, "base_lr": g["lr"]}
              for g in param_groups(MlmRoles(mlm), cfg)]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=cfg.weight_decay)


def _start(cfg: PretrainConfig, data_dir: Path, base_path: str, dev: torch.device, progress: Progress) -> _Run:
    """Load the base with its MLM head, read the corpus, build the optimiser."""
    torch.manual_seed(int(cfg.seed))  # a fresh head is initialised from the seed
    mlm, tokenizer, missing, pooler_sd = load_mlm(cfg.base, base_path)
    mlm.to(dev)  # before the optimizer state is loaded: it is cast to the parameters' device
    head_missing = head_missing_keys(mlm, missing)
    max_len = max_length_for(tokenizer, mlm.config, cfg.max_length)
    corpus = read_corpus(data_dir, cfg.tasks, cfg.include_eval_inputs, tokenizer, max_len, progress)
    settings = {
        "base": cfg.base, "base_path": str(base_path), "tasks": list(cfg.tasks), "data": corpus.files,
        "include_eval_inputs": bool(cfg.include_eval_inputs), "seed": int(cfg.seed),
        "batch_size": int(cfg.batch_size), "lr": float(cfg.lr), "layer_decay": float(cfg.layer_decay),
        "weight_decay": float(cfg.weight_decay), "warmup_steps": int(cfg.warmup_steps),
        "max_grad_norm": float(cfg.max_grad_norm), "mask_prob": float(cfg.mask_prob), "max_length": int(max_len),
    }
    return _Run(mlm, tokenizer, pooler_sd, "fresh" if head_missing else "pretrained", head_missing, corpus,
                Masker(tokenizer, mlm.config.vocab_size, cfg.mask_prob), max_len, settings, _optimizer(mlm, cfg))


def _restore(run: _Run, cfg: PretrainConfig, ckpt_dir: Path, out: Path) -> None:
    """Continue from the checkpoint: same settings required; weights, AdamW state and history back."""
    state = read_state(ckpt_dir)
    saved = state.settings
    diff = {k: (saved.get(k), v) for k, v in run.settings.items() if k != "base_path" and saved.get(k) != v}
    if diff:
        lines = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise EnsembleError(
            f"--resume {out}: the run's settings differ from the checkpoint's ({lines}); resume with the "
            "same settings (only --steps and --checkpoint-every may change), or start a new directory"
        )
    run.start_step = state.step
    if run.start_step > cfg.steps:
        raise EnsembleError(
            f"--resume {out}: the checkpoint is at step {run.start_step}, beyond --steps {cfg.steps}; expected "
            f"--steps {run.start_step} or more"
        )
    run.pooler_sd = load_checkpoint_weights(run.mlm, ckpt_dir) or run.pooler_sd
    load_optimizer(run.optimizer, ckpt_dir, state.optimizer_scalars)
    run.losses = list(state.losses)
    run.resumed = list(state.resumed) + [run.start_step]
    run.ppl_before = state.perplexity_before
    run.prev_seconds = state.seconds
    run.head = state.head or run.head
    run.head_missing = run.head_missing if state.head_missing_keys is None else list(state.head_missing_keys)


def _step(run: _Run, cfg: PretrainConfig, step: int, rows: np.ndarray, params: list, dev: torch.device) -> float:
    """One optimiser step on the given corpus rows; masks and dropout drawn from ``(seed, step)``."""
    c = run.corpus
    x, m, t = pad([c.input_ids[r] for r in rows], [c.token_type_ids[r] for r in rows], run.masker.pad_id)
    xin, labels = run.masker(x, m, torch.Generator().manual_seed(step_seed(cfg.seed, step, 1)))
    torch.manual_seed(step_seed(cfg.seed, step, 2))  # dropout
    scale = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    for g in run.optimizer.param_groups:
        g["lr"] = g["base_lr"] * scale
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum, n = mlm_loss_sum(run.mlm, xin.to(dev), m.to(dev), t.to(dev), labels.to(dev))
    loss = loss_sum / max(n, 1)
    if not torch.isfinite(loss):
        raise EnsembleError(f"pretraining diverged at step {step + 1} (loss {float(loss)}); "
                            "lower --lr or raise the warm-up")
    loss.backward()
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    run.optimizer.step()
    return float(loss.detach())


def _train_steps(run: _Run, cfg: PretrainConfig, out: Path, dev: torch.device, progress: Progress) -> float:
    """Run the steps from ``run.start_step`` to ``cfg.steps``, checkpointing; returns their seconds."""
    lengths = lengths_of(run.corpus.input_ids)
    per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    params = [p for g in run.optimizer.param_groups for p in g["params"]]
    progress.start("pretrain", cfg.steps)
    if run.start_step:
        progress.advance(run.start_step)
    t_train = time.perf_counter()
    cached_epoch, cached_batches = -1, []
    try:
        run.mlm.train()
        for step in range(run.start_step, cfg.steps):
            epoch, i = divmod(step, per_epoch)
            if epoch != cached_epoch:
                cached_epoch, cached_batches = epoch, epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch)
            run.losses.append(_step(run, cfg, step, cached_batches[i], params, dev))
            done = step + 1
            if done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                seconds = run.prev_seconds + time.perf_counter() - t_train
                write_checkpoint(out, run.mlm, run.pooler_sd, run.optimizer, run.state(done, seconds, cfg))
            progress.advance(1, loss=run.losses[-1])
    finally:
        progress.stop()
    return time.perf_counter() - t_train


def _measure(run: _Run, cfg: PretrainConfig, ev: EvalTexts) -> float:
    return perplexity(run.mlm, run.tokenizer, ev.texts, batch_size=64, mask_prob=cfg.mask_prob, max_length=run.max_len)


def _note_start(run: _Run, cfg: PretrainConfig, progress: Progress) -> None:
    if run.head == "fresh":
        hm = run.head_missing
        progress.note(f"MLM head: freshly initialised (the base checkpoint has no MLM head weights: "
                      f"{', '.join(hm[:4])}{' ...' if len(hm) > 4 else ''})")
    else:
        progress.note("MLM head: the base checkpoint's own pretrained head")
    if run.resumed:
        progress.note(f"resuming from the checkpoint at step {run.start_step} of {cfg.steps}")


def _base_provenance(base_path: str) -> dict[str, Any] | None:
    """The provenance of a base that was itself pretrained here, if it has a readable one."""
    path = Path(base_path) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        doc = documents.load_json(path, what="the provenance `ensemble pretrain` writes")
    except EnsembleError:
        return None
    return doc if isinstance(doc, dict) else None


def _provenance(run: _Run, cfg: PretrainConfig, base_path: str, ev: EvalTexts, ppl_after: float | None,
                seconds: float, dev: torch.device) -> dict[str, Any]:
    per_epoch = math.ceil(len(run.corpus.input_ids) / cfg.batch_size)
    losses = run.losses
    return {
        "format": 1,
        "producer": "ensemble pretrain",
        "base": cfg.base,
        "base_path": str(base_path),
        "tasks": list(cfg.tasks),
        "include_eval_inputs": bool(cfg.include_eval_inputs),
        "data": run.corpus.files,
        "sequences": {"total": len(run.corpus.input_ids), "per_file": run.corpus.counts},
        "steps": cfg.steps,
        "epochs": round(cfg.steps / per_epoch, 4),
        "seed": int(cfg.seed),
        "batch_size": int(cfg.batch_size),
        "lr": float(cfg.lr),
        "layer_decay": float(cfg.layer_decay),
        "weight_decay": float(cfg.weight_decay),
        "warmup_steps": int(cfg.warmup_steps),
        "schedule": "linear warm-up then constant",
        "max_grad_norm": float(cfg.max_grad_norm),
        "max_length": int(run.max_len),
        "masking": masking_provenance(cfg.mask_prob),
        "head": run.head,
        "head_missing_keys": run.head_missing,
        "loss": {"first_50_mean": float(np.mean(losses[:50])) if losses else None,
                 "last_50_mean": float(np.mean(losses[-50:])) if losses else None},
        "perplexity": None if not ev.texts else {
            "texts": ev.desc, "files": ev.files, "held_out": not cfg.include_eval_inputs,
            "mask_seed": PERPLEXITY_SEED, "before": run.ppl_before, "after": ppl_after,
        },
        "resumed_from": run.resumed,
        "seconds": round(seconds, 3),
        "device": str(dev),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "base_provenance": _base_provenance(base_path),
        "config": cfg.to_dict(),
    }


def pretrain(cfg: PretrainConfig, data_dir: str | Path, out: str | Path, *, resume: bool = False,
             device: str | None = None, progress: Progress = NULL) -> PretrainResult:
    """Further MLM pretraining of ``cfg.base`` on the text of ``cfg.tasks``; writes an encoder into ``out``.

    ``resume``: continue the run checkpointed in ``out`` (to ``cfg.steps``). Perplexity is measured
    before and after on the dev inputs (see :class:`PretrainConfig`); held out unless
    ``include_eval_inputs``. See the module docstring for the method and the output.
    """
    data_dir, out = Path(data_dir), Path(out)
    if not data_dir.is_dir():
        raise EnsembleError(f"--data {data_dir}: not a directory; expected the folder of the course files")
    ckpt_dir = checkpoint_to_resume(out, resume)
    dev = pick_device(device)
    base_path = resolve_base(cfg.base)
    run = _start(cfg, data_dir, base_path, dev, progress)
    if ckpt_dir is not None:
        _restore(run, cfg, ckpt_dir, out)
    else:
        out.mkdir(parents=True, exist_ok=True)
    ev = eval_texts(data_dir, cfg.tasks, cfg.perplexity_limit)
    _note_start(run, cfg, progress)
    if ev.texts and run.ppl_before is None:
        run.ppl_before = _measure(run, cfg, ev)
        progress.note(f"MLM perplexity before: {run.ppl_before:.2f} on {ev.desc}")
    seconds = _train_steps(run, cfg, out, dev, progress)
    ppl_after = None
    if ev.texts:
        ppl_after = _measure(run, cfg, ev)
        progress.note(f"MLM perplexity after {cfg.steps} steps: {ppl_after:.2f} on {ev.desc} "
                      f"(before: {run.ppl_before:.2f}"
                      f"{'' if not cfg.include_eval_inputs else '; not held out: dev inputs were pretrained on'})")
    provenance = _provenance(run, cfg, base_path, ev, ppl_after, run.prev_seconds + seconds, dev)
    run.mlm.to("cpu")
    export(out, run.mlm, run.tokenizer, run.pooler_sd, provenance)
    n_seq = len(run.corpus.input_ids)
    return PretrainResult(
        out=out, base=cfg.base, tasks=tuple(cfg.tasks), steps=cfg.steps, steps_run=cfg.steps - run.start_step,
        resumed_from=run.start_step if ckpt_dir is not None else None, head=run.head,
        head_missing_keys=list(run.head_missing), sequences=n_seq,
        epochs=cfg.steps / math.ceil(n_seq / cfg.batch_size), data=dict(run.corpus.files), losses=list(run.losses),
        perplexity_before=run.ppl_before, perplexity_after=ppl_after, perplexity_texts=ev.desc,
        perplexity_held_out=(not cfg.include_eval_inputs) if ev.texts else None,
        seconds=seconds, device=str(dev), provenance=provenance,
    )
