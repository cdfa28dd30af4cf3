"""Model soups: groups, recipes, averaging, registration, removal, verify, bad input, the honest
estimate (all on tiny random BERTs and the shipped sample data)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ensemble.errors import EnsembleError
from ensemble.registry.register import register_model
from ensemble.registry.store import Registry
from ensemble.soup.build import make_soups, plan_soups
from ensemble.soup.groups import soup_groups
from fixtures_torch import build_model, sample_data, tiny_base, torch_one_thread  # noqa: F401

W = "model/model.safetensors"


def _save(base, out: Path, seed: int, architecture: str = "multi", task_layers: int = 0, scale: float = 0.05) -> Path:
    """A model over the tiny base, moved off it by seeded noise (models of one start: one basin)."""
    from ensemble.modeling.model import save_model

    model, tok, _ = build_model(base, architecture, task_layers, seed=0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
        for p in model.heads.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)
    save_model(model, tok, out)
    return out


@pytest.fixture(scope="module")
def souped_registry(tiny_base, sample_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("soup")
    reg = Registry(root / "registry")
    ids = [register_model(reg, _save(tiny_base, root / f"m{s}", s), sample_data, name=f"m{s}", device="cpu").id
           for s in (1, 2, 3)]
    other = register_model(reg, _save(tiny_base, root / "c", 4, "cerberus", 1), sample_data, name="cerb",
                           device="cpu").id
    return {"root": reg.root, "ids": ids, "other": other, "data": sample_data}


def _copy(src, tmp_path) -> Registry:
    shutil.copytree(src["root"], tmp_path / "registry")
    return Registry(tmp_path / "registry")


def test_groups_leave_out_another_architecture_with_its_reason(souped_registry):
    groups, left = soup_groups(Registry(souped_registry["root"]).candidates())
    assert [g.ids for g in groups] == [sorted(souped_registry["ids"])]
    assert [x.id for x in left] == [souped_registry["other"]]
    assert "architecture" in left[0].reason


def test_other_shapes_are_left_out(souped_registry, tmp_path):
    from ensemble.soup.groups import soup_parts
    reg = Registry(souped_registry["root"])
    a, b = [reg.get(i) for i in souped_registry["ids"][:2]]
    pa = soup_parts(a)
    pa2 = soup_parts(b)
    assert pa["parameters"] == pa2["parameters"]
    # a file whose one tensor has another shape differs in "parameters" only
    folder = tmp_path / "cand"
    shutil.copytree(b.path, folder)
    state = load_file(str(folder / W))
    key = sorted(k for k in state if k.startswith("heads.sts"))[0]
    state[key] = torch.zeros(*[s + 1 for s in state[key].shape])
    from ensemble.modeling.model import save_tensors
    save_tensors(state, folder / W)
    from ensemble.registry.candidate import Candidate
    pc = soup_parts(Candidate(folder, b.manifest))
    assert pc["parameters"] != pa["parameters"] and pc["architecture"] == pa["architecture"]


def test_soup_of_one_model_is_that_model_bit_for_bit(souped_registry):
    from ensemble.soup.average import average_state
    reg = Registry(souped_registry["root"])
    c = reg.get(souped_registry["ids"][0])
    state = load_file(str(c.path / W))
    avg = average_state([c], state)
    assert set(avg) == set(state)
    assert all(torch.equal(avg[k], state[k]) and avg[k].dtype == state[k].dtype for k in state)


def test_uniform_soup_of_two_is_the_mean_of_their_state_dicts(souped_registry):
    from ensemble.soup.average import average_state
    reg = Registry(souped_registry["root"])
    a, b = [reg.get(i) for i in souped_registry["ids"][:2]]
    sa, sb = load_file(str(a.path / W)), load_file(str(b.path / W))
    avg = average_state([b, a], sa)
    for k in sa:
        if sa[k].is_floating_point():
            assert torch.equal(avg[k], (sa[k] + sb[k]) / 2), k
        else:
            assert torch.equal(avg[k], sa[k])


def test_damaged_member_is_refused_before_averaging(souped_registry, tmp_path):
    reg = _copy(souped_registry, tmp_path)
    victim = reg.get(souped_registry["ids"][1])
    raw = bytearray((victim.path / W).read_bytes())
    raw[-1] ^= 0xFF
    (victim.path / W).write_bytes(bytes(raw))
    before = sorted(p.name for p in reg.candidates_dir.iterdir())
    with pytest.raises(EnsembleError, match="sha256"):
        make_soups(reg, souped_registry["data"], tasks=["sst"], device="cpu")
    assert sorted(p.name for p in reg.candidates_dir.iterdir()) == before


def test_greedy_soup_never_below_its_first_member_and_records_each_step(souped_registry, tmp_path):
    reg = _copy(souped_registry, tmp_path)
    report = make_soups(reg, souped_registry["data"], device="cpu", honest={"folds": 2, "repeats": 1})
    assert [s.tasks for s in report.soups] == [["sst"], ["para"], ["sts"]]
    for soup in report.soups:
        first = soup.path.steps[0]
        assert first.joined and soup.path.members[0] == first.candidate
        assert soup.path.score >= first.own_score - 1e-12
        assert len(soup.path.steps) == 3
        assert soup.heldout is not None and len(soup.heldout.fold_gains) == 2
        if len(soup.path.members) == 1:   # the soup is its first member itself: nothing added
            assert soup.candidate == soup.path.members[0]
            continue
        cand = reg.get(soup.candidate)
        rec = cand.manifest["soup"]
        assert rec["members"] == soup.path.members and rec["recipe"] == "greedy"
        assert [s["joined"] for s in rec["steps"]] == [s.joined for s in soup.path.steps]
        assert cand.tasks == soup.tasks and cand.has_predictions(soup.tasks[0], "test")
        assert cand.dev_metric(soup.tasks[0]) == pytest.approx(soup.path.score)


def test_soup_scores_are_a_real_forward_pass(souped_registry, tmp_path):
    """The uniform soup's stored dev predictions are those of its stored weights, run again."""
    from ensemble.modeling.infer import predict_split
    from ensemble.modeling.model import load_model
    from ensemble.data import read_split
    reg = _copy(souped_registry, tmp_path)
    report = make_soups(reg, souped_registry["data"], recipe="uniform", tasks=["sts"], device="cpu")
    (soup,) = report.soups
    assert soup.path.members == sorted(souped_registry["ids"]) or set(soup.path.members) == set(souped_registry["ids"])
    cand = reg.get(soup.candidate)
    model, tok = load_model(cand.model_dir)
    ids, pred = predict_split(model, tok, read_split(souped_registry["data"], "sts", "dev"))
    cids, cached = cand.predictions("sts", "dev")
    assert cids == ids and np.allclose(cached, pred, atol=1e-6)
    assert report.forward_passes == 1


def test_a_per_task_soup_is_a_model_of_that_task_alone(souped_registry, tmp_path):
    from ensemble.modeling.model import load_model
    reg = _copy(souped_registry, tmp_path)
    report = make_soups(reg, souped_registry["data"], recipe="uniform", device="cpu")
    for soup in report.soups:
        model, _ = load_model(reg.get(soup.candidate).model_dir)
        assert list(model.heads) == soup.tasks and model.num_parameters() == soup.parameters


def test_soup_survives_the_removal_of_a_member_and_verify_checks_it(souped_registry, tmp_path):
    reg = _copy(souped_registry, tmp_path)
    report = make_soups(reg, souped_registry["data"], recipe="uniform", tasks=["para"], device="cpu")
    soup_id = report.soups[0].candidate
    reg.remove(souped_registry["ids"][0])
    assert not [p for p in reg.verify()[1] if p.candidate == soup_id]
    cand = reg.get(soup_id)
    from ensemble.modeling.model import load_model
    load_model(cand.model_dir)
    raw = bytearray((cand.path / W).read_bytes())
    raw[-1] ^= 0xFF
    (cand.path / W).write_bytes(bytes(raw))
    assert [p.file for p in reg.verify()[1] if p.candidate == soup_id] == [W]


def test_a_soup_is_never_souped_again(souped_registry, tmp_path):
    reg = _copy(souped_registry, tmp_path)
    report = make_soups(reg, souped_registry["data"], recipe="uniform", tasks=["sst"], device="cpu")
    groups, left = soup_groups(reg.candidates())
    assert report.soups[0].candidate in {x.id for x in left}
    assert "soup already" in {x.id: x.reason for x in left}[report.soups[0].candidate]


def test_multitask_soup_scores_the_mean_of_its_tasks(souped_registry, tmp_path):
    reg = _copy(souped_registry, tmp_path)
    report = make_soups(reg, souped_registry["data"], multitask=True, device="cpu", save=False)
    multi = [s for s in report.soups if len(s.tasks) == 3]
    assert len(multi) == 1 and multi[0].path.score >= multi[0].path.steps[0].own_score


@pytest.mark.parametrize("kwargs, words", [
    ({"recipe": "sideways"}, "unknown recipe"),
    ({"tasks": ["sts", "nli"]}, "no member of any soupable group has task nli"),
])
def test_bad_input_leaves_the_registry_as_it_was(souped_registry, tmp_path, kwargs, words):
    reg = _copy(souped_registry, tmp_path)
    before = sorted(p.name for p in reg.candidates_dir.iterdir())
    with pytest.raises(EnsembleError, match=words):
        make_soups(reg, souped_registry["data"], device="cpu", **kwargs)
    assert sorted(p.name for p in reg.candidates_dir.iterdir()) == before


def test_no_candidate_can_be_souped(souped_registry, tmp_path):
    reg = _copy(souped_registry, tmp_path)
    for cid in souped_registry["ids"][1:]:
        reg.remove(cid)
    with pytest.raises(EnsembleError, match="no candidate can be souped.*architecture"):
        plan_soups(reg, souped_registry["data"], device="cpu")


# -- the command line ---------------------------------------------------------------------------
def _cli(*args):
    from typer.testing import CliRunner

    from ensemble.cli import app
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"}, catch_exceptions=False)


def test_cli_soup_then_list_select_and_predict_input(souped_registry, tmp_path):
    reg = _copy(souped_registry, tmp_path)
    data = souped_registry["data"]
    r = _cli("soup", "--registry", reg.root, "--data", data, "--device", "cpu", "--tasks", "sts", "--folds", "2",
             "--recipe", "uniform",
             "--repeats", "1")
    assert r.exit_code == 0, r.output
    assert "groups that can be averaged" in r.output and "another architecture" in r.output
    assert "sts: uniform soup" in r.output and "held-out gain" in r.output
    soup_id = json.loads(_cli("list", "--registry", reg.root, "--json").output)
    names = {c["name"] for c in (soup_id if isinstance(soup_id, list) else soup_id["candidates"])}
    assert "soup-uniform-sts" in names
    r = _cli("show", "soup-uniform-sts", "--registry", reg.root)
    assert r.exit_code == 0 and "soup" in r.output, r.output
    r = _cli("verify", "--registry", reg.root)
    assert r.exit_code == 0, r.output
    r = _cli("select", "--registry", reg.root, "--data", data, "--tasks", "sts", "--repeats", "0", "--json")
    assert r.exit_code == 0, r.output
    r = _cli("predict", "--registry", reg.root, "--data", data, "--input", data / "sts-dev.csv", "--task", "sts",
             "--out", tmp_path / "out", "--device", "cpu")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args, words", [
    (("--recipe", "sideways"), "unknown recipe"),
    (("--tasks", "sts", "--multitask"), "no candidate can be souped"),
])
def test_cli_soup_bad_input_is_one_clear_error(souped_registry, tmp_path, args, words):
    reg = _copy(souped_registry, tmp_path)
    if "--multitask" in args:   # one member of the group left: nothing to average
        for cid in souped_registry["ids"][1:]:
            reg.remove(cid)
    before = sorted(p.name for p in reg.candidates_dir.iterdir())
    r = _cli("soup", "--registry", reg.root, "--data", souped_registry["data"], "--device", "cpu", *args)
    assert r.exit_code == 1 and words in r.output
    assert sorted(p.name for p in reg.candidates_dir.iterdir()) == before


# -- bench ----------------------------------------------------------------------------------------
def test_bench_soup_rows_side_by_side(souped_registry):
    from ensemble.bench.soup import bench_soup
    r = bench_soup(Registry(souped_registry["root"]), souped_registry["data"], ["sts"], "cpu", repeats=1, folds=2,
                   cf_repeats=1)
    systems = [x["system"] for x in r["rows"]]
    assert systems[:3] == ["best single", "uniform soup", "greedy soup"]
    assert systems[3] in {f"ensemble ({s})" for s in ("single", "greedy", "greedy-strict", "caruana", "bagged")}
    single, uniform, greedy, ens = r["rows"]
    assert uniform["members"] == 3 and uniform["parameters"] < single["parameters"]   # one task's head only
    assert ens["speed_vs_ensemble"] == 1 and ens["parameters"] == ens["members"] * single["parameters"]
    assert greedy["dev"] >= single["dev"] - 1e-12
    assert r["build"]["forward_passes"] >= 1


def test_soup_simulation_is_reproducible_and_averaging_one_basin_helps():
    from ensemble.bench.soup_honesty import SOUP_SCENARIOS, SimSoups, run_soup_honesty
    a = run_soup_honesty(replications=3, scenarios=["sts-m5-one-basin"], seed=1)
    b = run_soup_honesty(replications=3, scenarios=["sts-m5-one-basin"], seed=1)
    assert a == b
    sc = SOUP_SCENARIOS["sts-m8-three-basins"]
    Z = np.arange(8 * 4, dtype=float).reshape(8, 4, 1)
    sim = SimSoups(sc, [f"c{i}" for i in range(8)], Z, np.arange(8) % 3, [0])
    assert np.array_equal(sim.soup_of(["c0"])["sts"], Z[0])
    assert np.array_equal(sim.soup_of(["c0", "c3"])["sts"], (Z[0] + Z[3]) / 2)   # one family: no penalty
    assert not np.array_equal(sim.soup_of(["c0", "c1"])["sts"], (Z[0] + Z[1]) / 2)   # two basins: penalised
    assert a["rows"][0]["true_gain"] > 0
    with pytest.raises(EnsembleError, match="unknown or no scenario"):
        run_soup_honesty(replications=3, scenarios=["nope"])


# -- heads that can be averaged ---------------------------------------------------------------------
def test_head_seed_shares_the_heads_across_seeds_and_joins_the_fingerprint_only_when_set(tiny_base):
    from ensemble.training.config import TrainConfig
    from ensemble.training.finetune import _build_model

    def heads(**kw):
        model = _build_model(TrainConfig(base=str(tiny_base), **kw), torch.device("cpu"))[0]
        return {k: v.clone() for k, v in model.heads.state_dict().items()}

    torch.manual_seed(1)
    a = heads(seed=1, head_seed=7)
    torch.manual_seed(2)
    b = heads(seed=2, head_seed=7)
    torch.manual_seed(1)
    c = heads(seed=1)
    torch.manual_seed(2)
    d = heads(seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(c[k], d[k]) for k in c)
    hashes = {"f": "x"}
    assert TrainConfig(seed=3).fingerprint(hashes) == TrainConfig(seed=3, head_seed=None).fingerprint(hashes)
    assert TrainConfig(seed=3).fingerprint(hashes) != TrainConfig(seed=3, head_seed=0).fingerprint(hashes)
    with pytest.raises(EnsembleError, match="--head-seed"):
        TrainConfig(head_seed=-1)


def test_select_summary_shows_the_soups_beside_the_ensemble(souped_registry, tmp_path):
    from ensemble import workflow
    reg = _copy(souped_registry, tmp_path)
    make_soups(reg, souped_registry["data"], recipe="uniform", device="cpu", honest={"folds": 2, "repeats": 1})
    report = workflow.select(reg, souped_registry["data"], ("sst", "para", "sts"), repeats=0, save=False)
    (row,) = [r for r in report.summary if r["system"].startswith("soups (")]
    soups = {c.manifest["soup"]["tasks"][0]: c for c in reg.candidates() if c.manifest.get("soup")}
    assert row["dev"] == {t: soups[t].dev_metric(t) for t in ("sst", "para", "sts")}
    rec = soups["sts"].manifest["soup"]
    assert row["heldout"]["sts"] == pytest.approx(rec["best_single_dev"] + rec["heldout"]["estimate"])


def test_run_soup_makes_each_soup_once_and_says_when_none_can_be(souped_registry, tmp_path):
    from ensemble.progress import Recorder
    from ensemble.runner import soup_into
    reg = _copy(souped_registry, tmp_path)
    told = Recorder()
    said = told.lines
    made = soup_into(reg, souped_registry["data"], "cpu", told)
    assert len(made) == 3 and len(said) == 3
    made = sorted(set(made) - set(souped_registry["ids"]))   # a soup of one is its candidate itself
    n = len(reg.candidates())
    again = soup_into(reg, souped_registry["data"], "cpu", told)   # the same soups: not added twice
    assert sorted(set(again) - set(souped_registry["ids"])) == made
    assert len(reg.candidates()) == n
    for cid in souped_registry["ids"][1:] + made:
        reg.remove(cid)
    assert soup_into(reg, souped_registry["data"], "cpu", told) == []
    assert said[-1].startswith("--soup: no candidate can be souped")
