"""Housekeeping for a registry that grows: sizes on disk in `list`, `--where` comparisons over
columns and every training option, `remove` of several ids, `runs`, `prune` (a dry run first,
`--yes`) and `env`."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from ensemble.cli import app


def _run(*args, columns: int = 250):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(columns)})


def _ids(*args) -> list[str]:
    r = _run("list", "-q", *args)
    assert r.exit_code == 0, r.output
    return r.stdout.split()


def test_list_shows_each_size_on_disk_and_the_total(registry_with_imports):
    r = _run("list", "--registry", registry_with_imports)
    assert r.exit_code == 0
    assert "3 candidates in " in r.stdout and " kB on disk" in r.stdout
    header = next(line for line in r.stdout.splitlines() if "size" in line)
    assert "size" in header
    rows = json.loads(_run("list", "--json", "--registry", registry_with_imports).stdout)
    assert len(rows) == 3


def test_where_compares_numbers_and_reads_every_training_option(registry_with_imports, mixed_registry):
    reg = registry_with_imports
    sts = {row["id"]: row["dev"]["sts"] for row in json.loads(_run("list", "--json", "--registry", reg).stdout)}
    cut = sorted(sts.values())[1]
    assert sorted(_ids("--registry", reg, "--where", f"sts>{cut}")) == sorted(i for i, v in sts.items() if v > cut)
    assert sorted(_ids("--registry", reg, "--where", f"sts<={cut}")) == sorted(i for i, v in sts.items() if v <= cut)
    trained = _ids("--registry", mixed_registry, "--where", "batch_size=16")
    assert trained and set(trained) == set(_ids("--registry", mixed_registry, "--where", "warmup>=0"))
    assert _ids("--registry", mixed_registry, "--where", "batch_size>16") == []
    assert set(_ids("--registry", mixed_registry, "--where", "schedule=constant")) == set(trained)
    r = _run("list", "--registry", reg, "--where", "sts>high")
    assert r.exit_code == 1 and "> compares numbers" in r.stderr
    r = _run("list", "--registry", reg, "--where", "colour=red")
    assert r.exit_code == 1 and "a training option (" in r.stderr and "batch_size" in r.stderr


def test_remove_takes_several_ids(registry_with_imports):
    a, b, c = _ids("--registry", registry_with_imports)
    r = _run("remove", a, b, "--yes", "--registry", registry_with_imports)
    assert r.exit_code == 0, r.output
    assert _ids("--registry", registry_with_imports) == [c]


def test_runs_lists_the_training_runs(mixed_registry):
    r = _run("runs", "--registry", mixed_registry)
    assert r.exit_code == 0, r.output
    assert "2 runs in " in r.stdout and "complete" in r.stdout
    records = json.loads(_run("runs", "--json", "--registry", mixed_registry).stdout)
    assert len(records) == 2 and all(rec["candidates"] for rec in records)


def test_prune_is_a_dry_run_until_yes(registry_with_imports):
    reg = registry_with_imports
    rows = json.loads(_run("list", "--json", "--registry", reg).stdout)
    best = {max(rows, key=lambda row: row["dev"][t])["id"] for t in ("sst", "para", "sts")}
    gone = sorted(row["id"] for row in rows if row["id"] not in best)
    before = _ids("--registry", reg)
    r = _run("prune", "--top", "1", "--registry", reg)
    assert r.exit_code == 0 and f"would remove {len(gone)} candidate" in r.stdout
    assert "nothing was removed" in r.stderr and _ids("--registry", reg) == before
    doc = json.loads(_run("prune", "--top", "1", "--yes", "--json", "--registry", reg).stdout)
    assert sorted(doc["removed"]) == gone and doc["kept"] == len(best)
    assert sorted(_ids("--registry", reg)) == sorted(best)


def test_prune_keeps_the_members_of_saved_ensembles(registry_with_imports):
    from ensemble.data import PACKAGE_SAMPLE as SAMPLE
    reg = registry_with_imports
    assert _run("select", "--data", SAMPLE, "--registry", reg, "--mode", "greedy").exit_code == 0
    members = set(json.loads(_run("ensembles", "show", "ensemble-greedy", "--json", "--registry", reg).stdout)
                  ["tasks"]["sst"]["members"][i]["id"] for i in range(1))
    doc = json.loads(_run("prune", "--top", "1", "--json", "--registry", reg).stdout)
    assert not members & set(doc["would_remove"])


def test_env_says_versions_paths_registry_and_data(tmp_path):
    r = _run("env", "--registry", tmp_path / "reg")
    assert r.exit_code == 0
    for key in ("ensemble:", "python:", "torch:", "device:", "registry:", "data:"):
        assert key in r.stdout
    assert "(none yet)" in r.stdout
    assert json.loads(_run("env", "--json", "--registry", tmp_path / "reg").stdout)["python"]
