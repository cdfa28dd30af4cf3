"""`ensemble list` for scripts and for telling runs apart: --csv/--tsv (all columns, full precision),
-q, --columns, --where, --task; imported candidates have blank hyperparameters."""
from __future__ import annotations

import csv
import io
import json

from ensemble.cli.listing import FIELDS, params


def listed(invoke, reg, *args):
    r = invoke("list", "--registry", reg, *args)
    assert r.exit_code == 0, r.output
    return r.stdout


def test_params():
    assert params(None) == "-" and params(12345) == "12,345" and params(110_000_000) == "110.0M"


def test_csv_and_tsv_have_every_column_at_full_precision(mixed_registry, invoke):
    rows = json.loads(listed(invoke, mixed_registry, "--json"))
    for flag, delimiter in (("--csv", ","), ("--tsv", "\t")):
        got = list(csv.DictReader(io.StringIO(listed(invoke, mixed_registry, flag)), delimiter=delimiter))
        assert list(got[0]) == list(FIELDS) and [g["id"] for g in got] == [r["id"] for r in rows]
        for g, r in zip(got, rows):
            assert all(g[t] == (repr(r["dev"][t]) if t in r["dev"] else "") for t in ("sst", "para", "sts"))
            assert g["lr"] == ("" if r["lr"] is None else repr(r["lr"])) and g["tasks"] == ",".join(r["tasks"])
    imported = [g for g in got if g["kind"] == "predictions"]
    assert imported and all(g[k] == "" for g in imported for k in ("lr", "smart", "seed", "epoch", "task_layers"))


def test_columns_choose_and_unknown_is_a_clear_error(mixed_registry, invoke):
    text = listed(invoke, mixed_registry, "--csv", "--columns", "id,seed,lr")
    assert text.splitlines()[0] == "id,seed,lr"
    table = listed(invoke, mixed_registry, "--columns", "id,layer_decay,task_layers")
    assert "layer" in table and "decay" in table and "0.95" in table and "sst dev" not in table
    r = invoke("list", "--registry", mixed_registry, "--columns", "id,bogus")
    assert r.exit_code == 1 and "unknown column bogus" in r.output and "task_layers" in r.output


def test_quiet_where_and_task_filter(mixed_registry, invoke):
    rows = json.loads(listed(invoke, mixed_registry, "--json"))
    assert listed(invoke, mixed_registry, "-q").split() == [r["id"] for r in rows]
    cerberus = [r["id"] for r in rows if r["architecture"].startswith("cerberus")]
    assert listed(invoke, mixed_registry, "-q", "--where", "arch=cerberus-1").split() == cerberus
    assert listed(invoke, mixed_registry, "-q", "--where", "arch=cerberus").split() == cerberus
    assert listed(invoke, mixed_registry, "-q", "--where", "name=*-s1-e1").split() == cerberus
    seed0 = [r["id"] for r in rows if r["seed"] == 0]
    assert listed(invoke, mixed_registry, "-q", "--where", "seed=0").split() == seed0
    assert listed(invoke, mixed_registry, "-q", "--where", "lr=0.00003", "--where", "seed=1").split() == cerberus
    with_para = [r["id"] for r in rows if "para" in r["dev"]]
    assert listed(invoke, mixed_registry, "-q", "--task", "para").split() == with_para and len(with_para) == 2
    assert listed(invoke, mixed_registry, "-q", "--where", "tasks=para,sst").split() == with_para
    assert "matches" in listed(invoke, mixed_registry, "--where", "seed=7")
    r = invoke("list", "--registry", mixed_registry, "--where", "colour=red")
    assert r.exit_code == 1 and "--where colour=red" in r.output and "seed" in r.output
    r = invoke("list", "--registry", mixed_registry, "--task", "qqp")
    assert r.exit_code == 1 and "--task qqp" in r.output
