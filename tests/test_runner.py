"""``ensemble run``'s training step: a configuration with a finished run is skipped and its
candidates kept whatever else the registry holds; only the candidates of interrupted runs are
removed (and said), never those of a finished run or a saved ensemble's members."""
from __future__ import annotations

from pathlib import Path

import pytest

from ensemble.registry import keeper as register_mod
from ensemble.training import finetune as train_mod
from ensemble import runner, workflow
from ensemble.progress import Recorder
from ensemble.registry.keeper import train_into
from ensemble.registry.store import Registry
from ensemble.training.finetune import TrainConfig
from fixtures_torch import copy_data, copy_registry, tiny_base, torch_one_thread, trained  # noqa: F401


def train_interrupted(monkeypatch, reg: Registry, cfg: TrainConfig, data: Path) -> str:
    """Start training ``cfg`` and stop it (as Ctrl-C would) once its first candidate has landed;
    returns that candidate's id."""
    real = register_mod.EpochKeeper.keep

    def keep_then_stop(self, run, epoch):
        real(self, run, epoch)
        if self.holders:
            raise KeyboardInterrupt("simulated Ctrl-C after the first candidate landed")
    before = {c.id for c in reg.candidates()} if reg.exists else set()
    with monkeypatch.context() as m:
        m.setattr(register_mod.EpochKeeper, "keep", keep_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train_into(reg, cfg, data, device="cpu", again=True)
    (new,) = {c.id for c in reg.candidates()} - before
    return new


def run_preset(monkeypatch, cfg: TrainConfig, data: Path, reg: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    """``runner.run`` over a one-configuration preset; returns its result and its messages."""
    said = Recorder()
    monkeypatch.setitem(runner.PRESETS, "one", (lambda base: [cfg], cfg.base))
    opts = runner.RunOptions(data=data, preset="one", registry=reg, out=tmp_path / "out",
                             submissions=tmp_path / "subs", device="cpu")
    res = runner.run(opts, said)
    return res, said.lines


def test_a_finished_run_is_kept_and_only_the_interrupted_one_removed(trained, tmp_path, monkeypatch):
    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg, cfg, data = Registry(root), trained["config"], trained["data"]
    complete = sorted(trained["result"].candidates)
    assert sorted(c.id for c in reg.candidates()) == complete
    workflow.select(reg, data, name="mine")
    interrupted = train_interrupted(monkeypatch, reg, cfg, data)
    training = reg.get(interrupted).manifest["training"]
    assert training["run_complete"] is False and training["run_id"] != trained["result"].run_id
    assert training["fingerprint"] == reg.get(complete[0]).manifest["training"]["fingerprint"]

    res, said = run_preset(monkeypatch, cfg, data, root, tmp_path)
    assert res["trained"] == [] and res["skipped"] == [cfg.run_name]
    assert sorted(c.id for c in reg.candidates()) == complete       # every finished candidate kept
    assert said == [
        f"[1/1] {cfg.run_name}: removed {interrupted}: the candidates of run {training['run_id']}, which was "
        "interrupted before it finished (never marked complete)",
        f"[1/1] {cfg.run_name}: already in the registry ({', '.join(complete)}); skipped",
    ]
    # the ensemble saved before still predicts, and the registry is whole
    written = workflow.predict(reg, data, tmp_path / "mine-out", "mine")["written"]
    assert len(written) == 6
    assert reg.verify()[1] == []


def test_the_ray_engine_cleans_an_interrupted_run_beside_a_finished_one(trained, tmp_path, monkeypatch):
    """The same registry as above through ``train_ray``: nothing is left to train, so Ray never starts,
    and the interrupted run's candidate is removed as the local engine removes it."""
    from ensemble.scale.driver import RayOptions

    root = copy_registry(trained["registry"], tmp_path / "reg")
    reg, cfg, data = Registry(root), trained["config"], trained["data"]
    complete = sorted(trained["result"].candidates)
    interrupted = train_interrupted(monkeypatch, reg, cfg, data)
    run_id = reg.get(interrupted).manifest["training"]["run_id"]
    said = Recorder()
    res = runner.train_ray(reg, [cfg], data, RayOptions(), said)
    assert res["skipped"] == [cfg.run_name] and res["runs"] == []
    assert sorted(c.id for c in reg.candidates()) == complete
    assert said.lines == [f"[1/1] {cfg.run_name}: removed {interrupted}: the candidates of run {run_id}, which was "
                    "interrupted before it finished (never marked complete)",
                    f"[1/1] {cfg.run_name}: already in the registry ({', '.join(complete)}); skipped"]


def listed_newest_first(reg: Registry, ids: list[str]) -> None:
    """Date the candidates ``ids`` (two or more) so that the registry, which lists its candidates
    oldest first, lists them in the reverse of their ids' order."""
    assert len(ids) >= 2
    for year, cid in enumerate(sorted(ids, reverse=True), 2001):
        reg.update_manifest(cid, lambda m, year=year: m.update(created=f"{year}-01-01T00:00:00+00:00"))
    assert [c.id for c in reg.candidates() if c.id in ids] == sorted(ids, reverse=True)


def test_both_engines_name_a_skipped_configurations_candidates_in_one_order(trained, tmp_path):
    """Planned once, in one order: the candidates of a finished run are named by id (as `ensemble
    train`'s skip names them), whatever order the registry lists them in, by either engine."""
    from ensemble.scale.driver import RayOptions

    cfg, data = trained["config"], trained["data"]
    complete = sorted(trained["result"].candidates)
    said = {}
    for engine in ("local", "ray"):
        reg = Registry(copy_registry(trained["registry"], tmp_path / engine))
        listed_newest_first(reg, complete)
        (row,) = runner.plan(reg, [cfg], data)
        assert row["registered"] == complete and row["interrupted"] == []
        said[engine] = Recorder()
        if engine == "local":
            assert runner.train_local(reg, [cfg], data, "cpu", said[engine]) == ([], [cfg.run_name])
        else:
            assert runner.train_ray(reg, [cfg], data, RayOptions(), said[engine])["skipped"] == [cfg.run_name]
    assert said["local"].lines == said["ray"].lines == [
        f"[1/1] {cfg.run_name}: already in the registry ({', '.join(complete)}); skipped"]


def small_config(base) -> TrainConfig:
    return TrainConfig(base=str(base), epochs=1, batch_size=16, limit=8)


def test_a_configuration_with_only_an_interrupted_run_is_cleaned_and_trained_again(tiny_base, tmp_path, monkeypatch):
    data = copy_data(tmp_path / "data")
    reg, cfg = Registry(tmp_path / "reg"), small_config(tiny_base)
    interrupted = train_interrupted(monkeypatch, reg, cfg, data)
    run_id = reg.get(interrupted).manifest["training"]["run_id"]
    res, said = run_preset(monkeypatch, cfg, data, reg.root, tmp_path)
    assert res["skipped"] == [] and len(res["trained"]) == 1
    assert said[:2] == [f"[1/1] {cfg.run_name}: removed {interrupted}: the candidates of run {run_id}, which was "
                        "interrupted before it finished (never marked complete)",
                        f"[1/1] training {cfg.run_name}"]
    cands = reg.candidates()
    assert interrupted not in {c.id for c in cands}
    assert cands and all(c.manifest["training"]["run_complete"] for c in cands)


def test_an_interrupted_candidate_in_a_saved_ensemble_is_kept(tiny_base, tmp_path, monkeypatch):
    data = copy_data(tmp_path / "data")
    reg, cfg = Registry(tmp_path / "reg"), small_config(tiny_base)
    interrupted = train_interrupted(monkeypatch, reg, cfg, data)
    workflow.select(reg, data, name="partial")
    cand = reg.get(interrupted)
    res, said = run_preset(monkeypatch, cfg, data, reg.root, tmp_path)
    assert len(res["trained"]) == 1
    run_id = cand.manifest["training"]["run_id"]
    assert said[0] == (f"[1/1] {cfg.run_name}: kept {interrupted} ({cand.name}) of the unfinished run {run_id}: "
                       "a member of the saved ensemble partial")
    assert interrupted in {c.id for c in reg.candidates()}
    assert len(workflow.predict(reg, data, tmp_path / "partial-out", "partial")["written"]) == 6


def test_a_run_stopped_after_a_completed_epoch_is_resumed_not_redone(tiny_base, tmp_path, monkeypatch):
    """Stopped after epoch 1 of 2 had its checkpoint: `run` continues that run from epoch 2 (same
    run id, epoch 1's candidate kept, only epoch 2 trained) instead of removing its candidates."""
    data = copy_data(tmp_path / "data")
    reg = Registry(tmp_path / "reg")
    cfg = TrainConfig(base=str(tiny_base), epochs=2, batch_size=16, limit=8)
    real = register_mod.EpochKeeper.committed

    def commit_then_stop(self, run, result):
        real(self, run, result)
        raise KeyboardInterrupt("simulated Ctrl-C after epoch 1 was committed")
    with monkeypatch.context() as m:
        m.setattr(register_mod.EpochKeeper, "committed", commit_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train_into(reg, cfg, data, device="cpu")
    (first,) = reg.candidates()
    run_id = first.manifest["training"]["run_id"]
    assert (reg.root / "runs" / run_id / "checkpoint").is_dir()
    trained_epochs = []
    real_epoch = train_mod._train_epoch
    monkeypatch.setattr(train_mod, "_train_epoch", lambda *a, **k: trained_epochs.append(a[3]) or real_epoch(*a, **k))
    res, said = run_preset(monkeypatch, cfg, data, reg.root, tmp_path)
    assert said[0] == f"[1/1] resuming {cfg.run_name}: run {run_id} after epoch 1 of 2"
    assert trained_epochs == [2]
    (done,) = res["trained"]
    assert done["run_id"] == run_id and done["resumed_from"] == 1 and [e["epoch"] for e in done["epochs"]] == [1, 2]
    assert done["epochs"][0]["candidate"] == first.id
    assert all(c.manifest["training"]["run_complete"] for c in reg.candidates())
    assert not (reg.root / "runs" / run_id / "checkpoint").exists()
