"""A full disk for the adversarial tests: a small tmpfs mounted in a private mount namespace
(``unshare -rm``, or ``unshare -m`` as root), filled to a chosen number of free KiB, in which
``python -m ensemble`` commands run. Nothing is mounted outside that namespace, and the mount goes
with it. :func:`full_disk_skip` is the reason to skip where no tmpfs can be mounted.

Run as a script (inside the namespace) it is the driver: it mounts, copies the inputs in, fills
the disk, runs the commands, and writes what the test checks (exit codes, output, the stored
files' sha256 before and after, `verify`, leftovers) to a JSON file outside the mount."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _unshare(*args: str) -> list[str]:
    return ["unshare", "-m", *args] if os.geteuid() == 0 else ["unshare", "-rm", *args]


@lru_cache(maxsize=1)
def full_disk_skip() -> str | None:
    """None when a tmpfs can be mounted in a private namespace here, else why not (the skip reason)."""
    if shutil.which("unshare") is None:
        return "no `unshare` on this machine: no private tmpfs for the full-disk tests"
    probe = f"/tmp/ensemble-tmpfs-probe-{os.getpid()}"
    os.makedirs(probe, exist_ok=True)
    try:
        r = subprocess.run(_unshare("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", probe),
                           capture_output=True, text=True, timeout=30)
    finally:
        os.rmdir(probe)
    if r.returncode != 0:
        return f"cannot mount a tmpfs in a private namespace ({(r.stderr or r.stdout).strip()[:200]})"
    return None


def on_full_disk(tmp: Path, size_kb: int, free_kb: int, copy: dict[str, Path], commands: list[list[str]],
                 registry: str = "reg") -> dict:
    """Mount a ``size_kb`` tmpfs at ``tmp/disk``, copy ``copy`` (name in the disk -> source) into it,
    leave ``free_kb`` KiB free and run each command (``{disk}`` in an argument is the mount). Returns
    the driver's record: ``runs`` (returncode, stdout, stderr), ``before``/``after`` (registry file ->
    sha256), ``disk_before``/``disk_after`` (every file on the disk -> sha256), ``verify`` (its exit code and output, once the disk has room again) and ``left``
    (staging, trash and temp files left in the registry)."""
    spec = {"mount": str(tmp / "disk"), "size_kb": size_kb, "free_kb": free_kb,
            "copy": {k: str(v) for k, v in copy.items()}, "commands": commands, "registry": registry,
            "out": str(tmp / "full-disk-record.json")}
    (tmp / "disk").mkdir()
    (tmp / "full-disk-spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", COLUMNS="200")
    env.pop("ENSEMBLE_FAULT_AT", None)
    r = subprocess.run(_unshare(sys.executable, __file__, str(tmp / "full-disk-spec.json")), env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"full-disk driver failed:\n{r.stdout}\n{r.stderr}"
    return json.loads((tmp / "full-disk-record.json").read_text())


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in ("candidates", "ensembles") for p in sorted((root / d).rglob("*")) if p.is_file()}


def _disk(mount: Path) -> dict[str, str]:
    """Every file on the disk (the filler aside) with its sha256."""
    return {p.relative_to(mount).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(mount.rglob("*")) if p.is_file() and p.name != "filler"}


def _left(root: Path) -> list[str]:
    left = [p.relative_to(root).as_posix() for d in (".staging", ".trash") if (root / d).is_dir()
            for p in (root / d).iterdir()]
    return left + [p.relative_to(root).as_posix() for p in root.rglob("*.tmp")]


def _fill(mount: Path, free_kb: int) -> None:
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - free_kb * 1024))


def _ensemble(*args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "ensemble", *args], capture_output=True, text=True, timeout=300)
    return {"args": list(args), "returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr}


def _main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    mount = Path(spec["mount"])
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={spec['size_kb']}k", "tmpfs", str(mount)], check=True)
    for name, src in spec["copy"].items():
        (shutil.copytree if Path(src).is_dir() else shutil.copy2)(src, mount / name)
    reg = mount / spec["registry"]
    record = {"before": _hashes(reg) if reg.is_dir() else {}, "disk_before": _disk(mount)}
    _fill(mount, spec["free_kb"])
    record["runs"] = [_ensemble(*(a.replace("{disk}", str(mount)) for a in cmd)) for cmd in spec["commands"]]
    os.unlink(mount / "filler")
    record["after"] = _hashes(reg) if reg.is_dir() else {}
    record["disk_after"] = _disk(mount)
    record["verify"] = _ensemble("verify", "--registry", str(reg)) if reg.is_dir() else None
    record["left"] = _left(reg) if reg.is_dir() else []
    Path(spec["out"]).write_text(json.dumps(record))


if __name__ == "__main__":
    _main(sys.argv[1])
