"""With torch and transformers made unimportable, a grid file parses, ``run --dry-run`` plans, the
Ray driver's planning loads, and every command prints its ``--help``: what a user does before
training never waits for torch (and a CPU-only laptop without a GPU build still gets help)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import sys

    class NoTorch:   # any "import torch" or "import transformers" raises ImportError
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "transformers"):
                raise ImportError(f"{name} is made unimportable by this test")

    # a finder rather than sys.modules["torch"] = None: scipy looks torch up in sys.modules and
    # fails on a None there, which is scipy's behaviour, not ours
    sys.meta_path.insert(0, NoTorch())
    from pathlib import Path
    from typer.testing import CliRunner
    from ensemble import runner
    from ensemble.cli import app
    from ensemble.scale import driver, grid

    g = grid.load_grid(Path(sys.argv[1]))
    assert [c.lr for c in g.configs] == [1e-5, 2e-5], g.configs
    plan = runner.dry_run(runner.RunOptions(preset="paper", registry=Path(sys.argv[2])))
    assert len(plan["runs"]) == 12, plan
    assert driver.RayOptions is not None

    def leaves(group, path=()):
        for name, cmd in group.commands.items():
            yield from leaves(cmd, path + (name,)) if hasattr(cmd, "commands") else [path + (name,)]

    import typer
    commands = list(leaves(typer.main.get_command(app)))
    for path in commands:
        r = CliRunner().invoke(app, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
    assert not {m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")}
    print(len(commands), "commands")
''')


def test_help_grid_and_dry_run_never_import_torch(tmp_path):
    grid_file = tmp_path / "g.toml"
    grid_file.write_text('[defaults]\nbase = "minilm"\nepochs = 1\n[grid]\nlr = [1e-5, 2e-5]\n')
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(grid_file), str(tmp_path / "reg")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[0]) >= 20   # every command and bench subcommand was asked for --help
