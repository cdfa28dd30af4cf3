"""The training loop's options: the schedule on top of layer decay, gradient accumulation against one
step on the union, clipping of the global norm, gradient checkpointing against none, early stopping
on a scripted dev curve, and precision rules (fp16 on a CPU is an error)."""
from __future__ import annotations

import json

import pytest
import torch

from ensemble.training import finetune as train_mod
from ensemble.modeling.batches import encode
from ensemble.data import read_split
from ensemble.errors import EnsembleError
from ensemble.modeling.model import ARCHITECTURES, task_loss
from ensemble.progress import NULL, Recorder
from ensemble.registry.keeper import train_into
from ensemble.registry.store import Registry
from ensemble.registry.runs import read_runs
from ensemble.training.schedule import multiplier
from ensemble.training.finetune import Stepper, TrainConfig, _train_epoch, make_optimizer, training_step
from fixtures_torch import ALL_TASKS, build_model, copy_data, sample_batch, sample_data, tiny_base  # noqa: F401
from fixtures_torch import torch_one_thread  # noqa: F401

CPU = torch.device("cpu")


# -- the schedule on top of layer decay ------------------------------------------------------------
def test_group_rates_are_layer_decay_times_the_schedule(tiny_base):
    """lr 1e-3, layer decay 0.5 (2 layers): top layer 1e-3, bottom 5e-4, embeddings 2.5e-4, heads
    1e-3 x 2; linear schedule over 10 steps with 2 warm-up steps, so at step s the rates are those
    times 0, 0.5, 1, 7/8, 6/8, ..."""
    model = build_model(tiny_base, "multi")[0]
    cfg = TrainConfig(lr=1e-3, layer_decay=0.5, head_lr_mult=2.0, schedule="linear", warmup=0.2)
    opt = make_optimizer(model, cfg)
    stepper = Stepper(opt, cfg, 10)
    by_hand = {0: 0.0, 1: 0.5, 2: 1.0, 3: 7 / 8, 4: 6 / 8, 9: 1 / 8}
    names = {id(p): n for n, p in model.named_parameters()}
    base = {"stacks.shared.1.": 1e-3, "stacks.shared.0.": 5e-4, "embeddings.shared.": 2.5e-4, "heads.": 2e-3}
    for step in range(10):
        stepper()                   # no gradients: AdamW leaves the weights alone, the rates are set
        if step not in by_hand:
            continue
        assert stepper.last_lr == pytest.approx(1e-3 * by_hand[step], abs=1e-18)
        for g in opt.param_groups:
            name = names[id(g["params"][0])]
            prefix = next((k for k in base if name.startswith(k)), None)
            if prefix:
                assert g["lr"] == pytest.approx(base[prefix] * by_hand[step], rel=1e-12, abs=1e-18), (name, step)
    assert stepper.step == 10


# -- gradient accumulation -------------------------------------------------------------------------
def _sst_epoch(tiny_base, sample_data, batch_size, grad_accum, rows=8):
    """One epoch over ``rows`` sst rows with SGD (the update is the gradient itself), fp64, no
    dropout; returns the weights after."""
    model, tok, _ = build_model(tiny_base, "multi", tasks=("sst",), hidden_dropout=0.0, seed=2)
    for m in model.modules():          # attention dropout too
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.double()
    split = read_split(sample_data, "sst", "train")
    split.examples = split.examples[:rows]
    cfg = TrainConfig(tasks=("sst",), batch_size=batch_size, grad_accum=grad_accum, hidden_dropout=0.0, epochs=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    stepper = Stepper(opt, cfg, 1)
    _train_epoch(model, stepper, cfg, 1, {"sst": encode(tok, split, 64)}, CPU, "fp32", torch.Generator(), NULL)
    assert stepper.step == 1                    # one optimizer step either way
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_accumulating_two_batches_is_one_step_on_their_union(tiny_base, sample_data):
    """Two batches of 4 rows with --grad-accum 2 against one batch of the 8: each batch's mean loss
    is halved, so the summed gradient is the mean over the 8 rows, the union's gradient. Equal to
    fp64 rounding (1e-12; only the padding of the batches differs, masked out)."""
    accumulated = _sst_epoch(tiny_base, sample_data, 4, 2)
    union = _sst_epoch(tiny_base, sample_data, 8, 1)
    moved = 0
    for k in union:
        torch.testing.assert_close(accumulated[k], union[k], rtol=0, atol=1e-12)
        moved += int(not torch.equal(union[k], build_model(tiny_base, "multi", tasks=("sst",), seed=2)[0]
                                     .double().state_dict()[k]))
    assert moved > 0                                           # the step did change the weights


def test_the_last_step_of_an_epoch_divides_by_its_own_batch_count(tiny_base, sample_data, monkeypatch):
    """12 rows, batches of 4, --grad-accum 2: steps of 2 batches and then 1 (divided by 1, not 2)."""
    model, tok, _ = build_model(tiny_base, "multi", tasks=("sst",), hidden_dropout=0.0)
    split = read_split(sample_data, "sst", "train")
    split.examples = split.examples[:12]
    cfg = TrainConfig(tasks=("sst",), batch_size=4, grad_accum=2, hidden_dropout=0.0)
    scaled = []

    class Spy(Stepper):
        def backward(self, loss):
            scaled.append(float(loss.detach()))
            super().backward(loss)
    real = train_mod.training_step
    losses = []

    def spy_step(*a, **k):
        total, task_l = real(*a, **k)
        losses.append(float(total.detach()))
        return total, task_l
    stepper = Spy(torch.optim.SGD(model.parameters(), lr=0.0), cfg, 2)
    monkeypatch.setattr(train_mod, "training_step", spy_step)
    _train_epoch(model, stepper, cfg, 1, {"sst": encode(tok, split, 64)}, CPU, "fp32", torch.Generator(), NULL)
    assert stepper.step == 2
    assert scaled == pytest.approx([losses[0] / 2, losses[1] / 2, losses[2]], rel=1e-6)


# -- clipping --------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_clipping_bounds_the_global_norm(tiny_base, sample_data, max_norm):
    model, tok, _ = build_model(tiny_base, "multi", hidden_dropout=0.0)
    batch = sample_batch(tok, sample_data, "sts")
    total, _ = training_step(model, batch, TrainConfig().smart, CPU, "fp32")
    total.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    before = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
    assert before > 0.05
    seen = []
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    real_step = opt.step
    opt.step = lambda: (seen.append([p.grad.clone() for p in model.parameters() if p.grad is not None]), real_step())
    norm = Stepper(opt, TrainConfig(max_grad_norm=max_norm), 1)()
    assert norm == pytest.approx(before, rel=1e-5)          # the norm before clipping is returned
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in seen[0]])).item()
    assert after == pytest.approx(min(before, max_norm), rel=1e-5)
    if max_norm < before:                                    # clipping scales every gradient alike
        for g0, g1 in zip(grads, seen[0]):
            torch.testing.assert_close(g1, g0 * (max_norm / before), rtol=1e-4, atol=1e-9)


# -- gradient checkpointing ------------------------------------------------------------------------
@pytest.mark.parametrize("smart_weight", [0.0, 1.0])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_checkpointing_gives_the_same_loss_and_gradients(tiny_base, sample_data, architecture, smart_weight,
                                                        monkeypatch):
    """With dropout on (checkpointing replays the same masks) and with SMART (its ascent takes
    gradients through the checkpointed layers): the loss equal, every gradient within 1e-6; and the
    layers really went through torch's checkpoint when asked (else both runs would be the same code)."""
    import torch.utils.checkpoint as tuc

    real, calls = tuc.checkpoint, []
    monkeypatch.setattr(tuc, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    task_layers = 1 if architecture == "cerberus" else 0
    out, counted = [], []
    for on in (False, True):
        model, tok, _ = build_model(tiny_base, architecture, task_layers, hidden_dropout=0.1, seed=5)
        model.set_gradient_checkpointing(on)
        model.train()
        batch = sample_batch(tok, sample_data, "para")
        torch.manual_seed(11)
        total, task_l = training_step(model, batch, TrainConfig(smart_weight=smart_weight).smart, CPU, "fp32",
                                      torch.Generator().manual_seed(3))
        total.backward()
        out.append((float(total.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        counted.append(len(calls))
    assert counted[0] == 0 and counted[1] > 0, counted      # off: never checkpointed; on: the layers were
    (plain_loss, plain), (ckpt_loss, ckpt) = out
    assert ckpt_loss == pytest.approx(plain_loss, rel=1e-6)
    assert plain.keys() == ckpt.keys() and plain
    for n in plain:
        torch.testing.assert_close(ckpt[n], plain[n], rtol=0, atol=1e-6, msg=n)


def test_checkpointing_is_on_for_every_layer_only_when_asked(tiny_base):
    model = build_model(tiny_base, "multi+triple")[0]
    layers = [m for s in model.stacks.values() for m in s]
    assert layers and not any(m.gradient_checkpointing for m in layers)
    model.set_gradient_checkpointing(True)
    assert all(m.gradient_checkpointing for m in layers)


# -- early stopping and precision ------------------------------------------------------------------
def test_patience_stops_where_the_scripted_curve_says(tiny_base, tmp_path, monkeypatch):
    """Mean dev by epoch: .5, .6, .55, .58, .7 (never reached). --patience 2: epoch 2 is the best
    mean, epochs 3 and 4 do not beat it, so training stops after epoch 4 of 5."""
    means = {1: .5, 2: .6, 3: .55, 4: .58, 5: .7}
    calls = []

    def fake_score(task, preds, labels):
        calls.append(task)
        epoch = 1 + (len(calls) - 1) // 3
        return means[epoch] + {"sst": -0.01, "para": 0.0, "sts": 0.01}[task]
    monkeypatch.setattr(train_mod, "score", fake_score)
    reg = Registry(tmp_path / "reg")
    cfg = TrainConfig(base=str(tiny_base), epochs=5, batch_size=16, limit=8, patience=2)
    told = Recorder()
    res = train_into(reg, cfg, copy_data(tmp_path / "data"), device="cpu", progress=told)
    seen = [{k: v for k, v in e.items() if k != "kind"} for e in told.events if e["kind"] == "epoch"]
    assert [e.epoch for e in res.epochs] == [1, 2, 3, 4] and res.status == "stopped"
    (record,) = read_runs(reg.root)
    assert record["status"] == "stopped" and len(record["epochs"]) == 4
    # each epoch's "epoch" event: every epoch, candidate or not, its record entry plus the run's id and name
    assert seen == [{**e, "run_id": res.run_id, "name": cfg.run_name} for e in record["epochs"]]
    assert [e["candidate"] is not None for e in seen] == [True, True, False, False]
    assert [c.manifest["training"]["epoch"] for c in reg.candidates()] == [2]
    assert not (reg.root / "runs" / res.run_id / "checkpoint").exists()


def test_fp16_on_a_cpu_is_a_clear_error_before_any_work(tiny_base, tmp_path):
    reg = Registry(tmp_path / "reg")
    cfg = TrainConfig(base=str(tiny_base), epochs=1, limit=8, precision="fp16")
    with pytest.raises(EnsembleError, match=r"^--precision fp16 needs a CUDA device; on a CPU use fp32 or bf16$"):
        train_into(reg, cfg, copy_data(tmp_path / "data"), device="cpu")
    assert not (tmp_path / "reg").exists()


def test_fp64_model_keeps_an_fp64_loss(tiny_base, sample_data):
    model, tok, _ = build_model(tiny_base, "multi", hidden_dropout=0.0)
    model.double()
    batch = sample_batch(tok, sample_data, "sts")
    y = model("sts", batch.input_ids, batch.attention_mask, batch.token_type_ids)
    assert task_loss("sts", y, batch.labels).dtype == torch.float64
    assert task_loss("sts", y.float(), batch.labels).dtype == torch.float32
    assert multiplier("constant", 0, 1) == 1.0


def test_bf16_training_on_a_cpu_with_bf16_instructions(tiny_base, tmp_path):
    """--precision bf16 on a CPU: trains under bf16 autocast where the CPU has the instructions
    (the candidate says so), else the error names what is missing."""
    from ensemble.modeling.infer import cpu_has_bf16

    reg = Registry(tmp_path / "reg")
    cfg = TrainConfig(base=str(tiny_base), tasks=("sst",), epochs=1, batch_size=16, limit=16, precision="bf16")
    if not cpu_has_bf16():
        with pytest.raises(EnsembleError, match="this CPU has no bf16 support"):
            train_into(reg, cfg, copy_data(tmp_path / "data"), device="cpu")
        return
    res = train_into(reg, cfg, copy_data(tmp_path / "data"), device="cpu")
    (cand,) = reg.candidates()
    assert cand.manifest["precision"] == "bf16" and res.epochs[0].train_loss["sst"] > 0
    assert read_runs(reg.root)[0]["precision"] == "bf16"


# -- the loss scaler's path (fp16 runs only on CUDA; torch's CPU GradScaler runs the same logic) -------
def test_loss_scaling_unscales_before_clipping_and_skips_inf_steps(tiny_base, sample_data, tmp_path):
    """Stepper with a GradScaler: the scaled backward, unscaled before clipping, gives the very
    update of the unscaled step (SGD: update = gradient); a step with an inf gradient is skipped and
    the scale halved; the scaler's state goes through a checkpoint and back."""
    from ensemble.training import checkpoint as ckpt

    updates = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)):
        model, tok, _ = build_model(tiny_base, "multi", hidden_dropout=0.0, seed=1)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.1), TrainConfig(max_grad_norm=0.5), 1, scaler)
        total, _ = training_step(model, sample_batch(tok, sample_data, "sst"), TrainConfig().smart, CPU, "fp32")
        stepper.backward(total)
        stepper()
        updates.append({k: before[k] - v for k, v in model.state_dict().items()})
    for k in updates[0]:
        torch.testing.assert_close(updates[1][k], updates[0][k], rtol=1e-5, atol=1e-9)
    p = next(model.parameters())
    p.grad = torch.full_like(p, float("inf"))
    kept = p.detach().clone()
    stepper()
    assert torch.equal(p.detach(), kept) and scaler.get_scale() == 2.0 ** 9     # skipped, scale halved
    ckpt.write(tmp_path / "checkpoint", model, stepper.optimizer, torch.Generator(), scaler, ckpt.LoopState(step=1))
    fresh = torch.amp.GradScaler("cpu")
    loop = ckpt.restore(ckpt.find(tmp_path / "checkpoint"), model, stepper.optimizer, torch.Generator(), fresh)
    assert loop == ckpt.LoopState(step=1) and fresh.state_dict() == scaler.state_dict()


def _epoch(n: int, dev: float) -> dict:
    """One epoch's record entry as a checkpoint holds it."""
    return {"epoch": n, "train_loss": {"sst": 0.5}, "dev": {"sst": dev}, "seconds": 1.0, "tokens": 10, "lr": 1e-3,
            "tokens_per_second": 10.0, "candidate": None, "best_for": []}


def test_the_loop_state_keeps_the_checkpoint_keys_old_checkpoints_hold(tmp_path):
    """``state.json``'s "loop" as checkpoints have always held it (loose keys) is read into a
    LoopState and written back key for key, so an older run still resumes; a missing field is an
    error naming the file and the field."""
    from ensemble.training import checkpoint as ckpt

    old = {"epoch": 2, "step": 36, "best": {"sst": 0.25, "para": None}, "best_mean": 0.4, "since_best": 1,
           "stopped": False, "epochs": [_epoch(1, 0.25), _epoch(2, 0.2)]}
    _, rng = ckpt.rng_state(torch.Generator())
    (tmp_path / ckpt.STATE).write_text(json.dumps({"loop": old, "optimizer_scalars": {}, "rng": rng}))
    loop = ckpt.read_loop(tmp_path)
    assert loop.epoch == 2 and loop.step == 36 and loop.best == {"sst": 0.25, "para": None} and loop.since_best == 1
    assert loop.to_dict() == old
    assert ckpt.LoopState.start(("sst", "sts")).to_dict() == {
        "epoch": 0, "step": 0, "best": {"sst": None, "sts": None}, "best_mean": None, "since_best": 0,
        "stopped": False, "epochs": []}
    (tmp_path / ckpt.STATE).write_text(json.dumps({"loop": {k: v for k, v in old.items() if k != "since_best"},
                                                   "optimizer_scalars": {}, "rng": rng}))
    with pytest.raises(EnsembleError, match=rf"{ckpt.STATE}: loop.since_best"):
        ckpt.read_loop(tmp_path)
