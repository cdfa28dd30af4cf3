"""Search-space files: what they parse to, conditional options, and every error naming the file,
the key and what was expected (no torch, no optuna)."""
from __future__ import annotations

import pytest

from ensemble.errors import EnsembleError
from ensemble.search.space import SPACE_PRESETS, load_space


class Fixed:
    """A stand-in for an Optuna trial: every suggestion is the low bound or the first choice,
    except the values given; records what was asked."""

    def __init__(self, **given):
        self.given, self.asked = given, []

    def suggest_float(self, name, low, high, *, log=False):
        self.asked.append((name, "log" if log else "float", low, high))
        return self.given.get(name, low)

    def suggest_int(self, name, low, high):
        self.asked.append((name, "int", low, high))
        return self.given.get(name, low)

    def suggest_categorical(self, name, choices):
        self.asked.append((name, "choice", tuple(choices)))
        return self.given.get(name, choices[0])


def write(tmp_path, text: str):
    p = tmp_path / "space.toml"
    p.write_text(text)
    return p


GOOD = """
[defaults]
base = "minilm"
epochs = 3
[space]
lr = { log_uniform = [5e-6, 1e-4] }
head-dropout = { uniform = [0.0, 0.5] }
task_layers = { int = [1, 4] }
smart_weight = { choice = [0, 5, 10, 15] }
architecture = { choice = ["multi", "cerberus"] }
"""


def test_a_space_parses_and_samples_each_kind(tmp_path):
    space = load_space(write(tmp_path, GOOD))
    assert space.defaults == {"base": "minilm", "epochs": 3}
    assert {k: d.kind for k, d in space.dists.items()} == {
        "lr": "log_uniform", "head_dropout": "uniform", "task_layers": "int", "smart_weight": "choice",
        "architecture": "choice"}
    assert space.dists["smart_weight"].values == (0.0, 5.0, 10.0, 15.0)   # ints as the float option they set
    trial = Fixed(lr=3e-5, architecture="cerberus", task_layers=3, smart_weight=10.0)
    cfg = space.sample(trial)
    assert (cfg.lr, cfg.architecture, cfg.task_layers, cfg.smart_weight, cfg.head_dropout, cfg.epochs) == \
        (3e-5, "cerberus", 3, 10.0, 0.0, 3)
    assert ("lr", "log", 5e-6, 1e-4) in trial.asked and ("head_dropout", "float", 0.0, 0.5) in trial.asked


def test_task_layers_is_sampled_for_cerberus_only(tmp_path):
    space = load_space(write(tmp_path, GOOD))
    trial = Fixed(architecture="multi")
    cfg = space.sample(trial)
    assert cfg.architecture == "multi" and cfg.task_layers == 0
    assert "task_layers" not in [a[0] for a in trial.asked]   # not sampled in vain
    assert "task_layers" not in space.params(Fixed(architecture="multi"))


def test_the_shipped_spaces_parse_and_paper_covers_the_reports_tables():
    for name in SPACE_PRESETS:
        load_space(name)
    paper = load_space("paper")
    assert set(paper.dists) >= {"lr", "head_dropout", "hidden_dropout", "weight_decay", "layer_decay", "head_lr_mult",
                                "smart_weight", "architecture", "task_layers"}


@pytest.mark.parametrize("text, expected", [
    ("[space]\nlr = 1e-5\n", "[space] lr = 1e-05: expected one of { log_uniform"),
    ("[space]\nlr = { gauss = [1, 2] }\n", "[space] lr = {'gauss': [1, 2]}: expected one of"),
    ("[space]\nlr = { uniform = [1e-3] }\n", "[space] lr: uniform = [0.001]: expected two bounds [low, high]"),
    ("[space]\nlr = { uniform = [1e-3, 1e-4] }\n", "expected finite bounds with low < high"),
    ("[space]\nlr = { log_uniform = [0.0, 1e-4] }\n", "[space] lr: log_uniform = [0.0, 0.0001]: expected bounds > 0"),
    ("[space]\nlr = { uniform = ['a', 'b'] }\n", "[space] lr: lr = 'a': expected a number"),
    ("[space]\ntask_layers = { uniform = [1, 3] }\n", "[space] task_layers: uniform: task_layers is not a number option"),
    ("[space]\nbogus = { uniform = [1, 3] }\n", "[space] bogus: unknown key 'bogus'; expected a `train` option"),
    ("[space]\nepochs = { int = [1, 3] }\n", "[space] epochs: epochs cannot be searched"),
    ("[space]\nhead_dropout = { uniform = [0.0, 1.5] }\n",
     "[space] head_dropout: uniform value 1.5: --head-dropout must be in [0, 1)"),
    ("[space]\narchitecture = { choice = ['multi', 'octopus'] }\n", "[space] architecture: choice value 'octopus'"),
    ("[space]\nsmart_weight = { choice = [1, 1.0] }\n", "choice [1, 1.0]: expected each value once"),
    ("[defaults]\nlr = 1e-5\n[space]\nlr = { uniform = [1e-5, 1e-4] }\n", "[space] lr: also in [defaults]"),
    ("[defaults]\nlr = 1e-5\n", "[space]: expected at least one searched option"),
    ("[grid]\nseed = [1]\n", "unknown table or key 'grid'; expected [defaults] and [space] tables"),
    ("[defaults]\nlr = 'fast'\n[space]\nseed = { int = [0, 3] }\n", "[defaults]: lr = 'fast': expected a number"),
    ("[space\n", "not valid TOML"),
])
def test_space_errors_name_the_file_the_key_and_what_was_expected(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(EnsembleError) as e:
        load_space(path)
    assert str(e.value).startswith(str(path)) and expected in str(e.value), str(e.value)


def test_a_missing_space_file_names_it_and_the_shipped_ones(tmp_path):
    with pytest.raises(EnsembleError, match=r"nowhere\.toml: cannot read the search space .*paper, quick"):
        load_space(tmp_path / "nowhere.toml")


def test_without_optuna_search_says_what_to_install_and_verify_still_works(tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from ensemble.cli import app

    monkeypatch.setitem(sys.modules, "optuna", None)   # `import optuna` raises ImportError
    space = write(tmp_path, "[defaults]\nbase = 'minilm'\n[space]\nlr = { uniform = [1e-5, 1e-4] }\n")
    r = CliRunner().invoke(app, ["search", str(space), "--trials", "1", "--registry", str(tmp_path / "reg")])
    assert r.exit_code == 1 and 'install it with `pip install -e ".[search]"`' in r.output, r.output
    (tmp_path / "reg2" / "candidates").mkdir(parents=True)
    v = CliRunner().invoke(app, ["verify", "--registry", str(tmp_path / "reg2")])
    assert v.exit_code == 0 and "0 problems" in v.output, v.output
