"""Grid files: parsing, checking, expansion; the shipped presets give exactly the configurations
(and so the fingerprints) that runner's hand-written lists gave before they became grid files."""
from __future__ import annotations

from pathlib import Path

import pytest

from ensemble import runner
from ensemble.errors import EnsembleError
from ensemble.scale.grid import GRIDS_DIR, load_grid, load_preset
from ensemble.training.finetune import TrainConfig

HASHES = {"ids-sst-train.csv": "a" * 64, "quora-dev.csv": "b" * 64}   # any data: the same for old and new


def old_quick(base):
    common = dict(base=base, epochs=2, limit=400, lr=1e-4, batch_size=16, max_length=128)
    return [TrainConfig(architecture="multi", seed=0, **common),
            TrainConfig(architecture="cerberus", task_layers=2, seed=0, **common),
            TrainConfig(architecture="multi", smart_weight=10.0, seed=1, **common),
            TrainConfig(architecture="triple", seed=2, **common)]


def old_paper(base):
    common = dict(base=base, epochs=10, lr=1e-5, layer_decay=0.95, batch_size=16, weight_decay=1e-4)
    grid = []
    for seed in (0, 1, 2):
        grid += [TrainConfig(architecture="multi", smart_weight=12.0, seed=seed, **common),
                 TrainConfig(architecture="cerberus", task_layers=2, smart_weight=10.0, seed=seed, **common),
                 TrainConfig(architecture="cerberus", task_layers=3, smart_weight=12.0, seed=seed, **common),
                 TrainConfig(architecture="triple", tasks=("sst",), smart_weight=15.0, seed=seed,
                             **{**common, "weight_decay": 1e-5})]
    return grid


@pytest.mark.parametrize("name,old,base", [("quick", old_quick, "minilm"), ("paper", old_paper, "bert-base-uncased")])
def test_the_presets_are_the_old_lists_fingerprint_for_fingerprint(name, old, base):
    make, default_base = runner.PRESETS[name]
    assert default_base == base
    for b in (base, "/some/other/base"):
        new = make(b) if b != base else load_preset(name).configs
        assert [c.to_dict() for c in new] == [c.to_dict() for c in old(b)]
        assert [c.fingerprint(HASHES) for c in new] == [c.fingerprint(HASHES) for c in old(b)]
        assert [c.run_name for c in new] == [c.run_name for c in old(b)]
    assert (GRIDS_DIR / f"{name}.toml").is_file()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "g.toml"
    p.write_text(text)
    return p


def test_grid_product_times_runs_in_order_with_both_spellings(tmp_path):
    g = load_grid(write(tmp_path, """
[defaults]
base = "b"
epochs = 1
lr = 1          # an int where a float is expected is that float
[grid]
seed = [0, 1]
smart-weight = [0, 5]
[[runs]]
architecture = "multi"
[[runs]]
architecture = "cerberus"
task_layers = 1
tasks = ["sts", "sst"]
"""))
    got = [(c.seed, c.smart_weight, c.architecture, c.tasks) for c in g.configs]
    all_ = ("sst", "para", "sts")
    assert got == [(0, 0.0, "multi", all_), (0, 0.0, "cerberus", ("sst", "sts")),
                   (0, 5.0, "multi", all_), (0, 5.0, "cerberus", ("sst", "sts")),
                   (1, 0.0, "multi", all_), (1, 0.0, "cerberus", ("sst", "sts")),
                   (1, 5.0, "multi", all_), (1, 5.0, "cerberus", ("sst", "sts"))]
    assert all(c.lr == 1.0 and isinstance(c.lr, float) and c.epochs == 1 for c in g.configs)
    assert g.configs[0].fingerprint(HASHES) == TrainConfig(base="b", epochs=1, lr=1.0).fingerprint(HASHES)


def test_a_grid_alone_and_a_base_override(tmp_path):
    g = load_grid(write(tmp_path, "[grid]\nseed = [3, 4]\n"), base="mine")
    assert [(c.seed, c.base) for c in g.configs] == [(3, "mine"), (4, "mine")]
    assert g.name == "g"


@pytest.mark.parametrize("text,message", [
    ("[defaults]\nlearning_rate = 1e-5\n", "[defaults]: unknown key 'learning_rate'; expected a `train` option: base, "),
    ("[defaults]\nepochs = 1.5\n", "[defaults]: epochs = 1.5: expected an integer"),
    ("[defaults]\nepochs = true\n", "[defaults]: epochs = True: expected an integer"),
    ("[defaults]\nlr = \"fast\"\n", "[defaults]: lr = 'fast': expected a number"),
    ("[defaults]\nlr = -1\n", "[[runs]] #1: --lr must be > 0"),
    ("[grid]\nseed = 3\n", "[grid] seed: expected a non-empty list of values, got 3"),
    ("[grid]\nseed = []\n", "[grid] seed: expected a non-empty list of values, got []"),
    ("[grid]\nepochs = [1, 0]\n", "[[runs]] #1 with epochs = 0: --epochs must be >= 1"),
    ("[grid]\nseed = [0]\n[[runs]]\nseed = 1\n", "[[runs]] #1: seed is also a [grid] list; expected it in one of them"),
    ("[[runs]]\narchitecture = \"quad\"\n", "[[runs]] #1: architecture 'quad' is not known; expected one of multi, "),
    ("[[runs]]\ntasks = [\"sst\", \"nli\"]\n", "[[runs]] #1: tasks: unknown task 'nli'; expected a subset of sst,para,sts"),
    ("[[runs]]\ntasks = 3\n", "[[runs]] #1: tasks = 3: expected a list of task names (sst, para, sts) or a comma-"),
    ("[[runs]]\nseed = 1\n[[runs]]\nseed = 1\n", "[[runs]] #2 is the same configuration as [[runs]] #1; expected each"),
    ("[default]\nseed = 1\n", "unknown table or key 'default'; expected [defaults], [grid] and [[runs]] tables"),
    ("[defaults]\nsmart_weight = 1\nsmart-weight = 2\n", "[defaults]: 'smart-weight' is given twice"),
    ("seed = [", "not valid TOML"),
    # issue 26: refused at parse time, naming the key, before any run is trained
    ("[defaults]\nlr = inf\n", "[defaults]: lr = inf: expected a finite number"),
    ("[defaults]\nweight_decay = inf\n", "[defaults]: weight_decay = inf: expected a finite number"),
    ("[grid]\nsmart_weight = [1.0, inf]\n", "[grid]: smart_weight = inf: expected a finite number"),
    ("[[runs]]\nsmart_sigma = nan\n", "[[runs]] #1: smart_sigma = nan: expected a finite number"),
    ("[grid]\nseed = " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 32 levels"),
    ("[defaults]\nseed = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n", "nested deeper than 32 levels"),
    ("[grid]\nseed = " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
])
def test_bad_grid_files_name_the_file_the_key_and_what_was_expected(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(EnsembleError) as e:
        load_grid(p)
    assert str(e.value).startswith(f"{p}: ") and message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_missing_grid_file_and_an_unknown_preset(tmp_path):
    with pytest.raises(EnsembleError, match=r"--grid .*nope.toml: cannot read it"):
        load_grid(tmp_path / "nope.toml")
    with pytest.raises(EnsembleError, match=r"--preset huge: expected one of quick, paper"):
        load_preset("huge")
