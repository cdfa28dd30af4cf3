"""TAB completion offers what exists: candidate ids (``show``, ``remove``, ``compare``, ``verify``),
run ids (``show``), saved ensemble names (``ensembles show``, ``predict --ensemble``, ``analyze``)
and ``list --sort``'s keys, read from the registry the command line names."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from ensemble.cli import app
from ensemble.data import PACKAGE_SAMPLE as SAMPLE


def _complete(words: str) -> list[str]:
    parts = words.split(" ")
    r = CliRunner().invoke(app, [], prog_name="ensemble", env={
        "_ENSEMBLE_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)})
    return r.stdout.split()


def _ids(reg) -> list[str]:
    return [row["id"] for row in json.loads(CliRunner().invoke(app, ["list", "--json", "--registry", str(reg)]).stdout)]


def test_candidate_ids_complete(registry_with_imports):
    ids = sorted(_ids(registry_with_imports))
    for command in ("show", "remove", "compare", "verify"):
        assert sorted(_complete(f"ensemble {command} --registry {registry_with_imports} ")) == ids, command
    assert _complete(f"ensemble show --registry {registry_with_imports} {ids[0][:4]}") == \
        [i for i in ids if i.startswith(ids[0][:4])]


def test_run_ids_complete_after_show(mixed_registry):
    runs = [r["run_id"] for r in json.loads(CliRunner().invoke(app, ["runs", "--json", "--registry",
                                                                     str(mixed_registry)]).stdout)]
    offered = _complete(f"ensemble show --registry {mixed_registry} ")
    assert set(runs) <= set(offered) and set(_ids(mixed_registry)) <= set(offered)


def test_ensemble_names_and_sort_keys_complete(registry_with_imports):
    reg = registry_with_imports
    assert CliRunner().invoke(app, ["select", "--data", str(SAMPLE), "--registry", str(reg), "--mode", "greedy"]
                              ).exit_code == 0
    assert _complete(f"ensemble ensembles show --registry {reg} ") == ["ensemble-greedy"]
    assert _complete(f"ensemble predict --registry {reg} --ensemble e") == ["ensemble-greedy"]
    assert _complete(f"ensemble analyze --registry {reg} --ensemble ") == ["ensemble-greedy"]
    assert _complete("ensemble list --sort s") == ["sst", "sts"]
