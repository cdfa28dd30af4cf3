"""A Ray worker setup hook for the tests (``runtime_env={"worker_process_setup_hook": "ray_guard.install"}``):
in every worker process, any file operation on a path under ``ENSEMBLE_GUARD_ROOTS`` (the driver's
folders: registry, data, base) fails with PermissionError and is appended to ``ENSEMBLE_GUARD_LOG``.
An empty log after a grid proves that no worker read or wrote the driver's folders."""
from __future__ import annotations

import os
import sys

WATCHED = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir",
           "os.link", "os.symlink", "os.chmod", "os.truncate", "os.utime", "os.chdir", "shutil.copyfile",
           "shutil.copytree", "shutil.rmtree", "shutil.move", "os.walk", "glob.glob", "pathlib.Path.glob"}


def _paths(args) -> list[str]:
    out = []
    for a in args[:2]:
        if isinstance(a, (str, bytes, os.PathLike)):
            out.append(os.path.abspath(os.fsdecode(a)))
    return out


def install() -> None:
    roots = tuple(r for r in os.environ.get("ENSEMBLE_GUARD_ROOTS", "").split(os.pathsep) if r)
    log = os.environ.get("ENSEMBLE_GUARD_LOG")
    if not roots or not log:
        return

    def hook(event: str, args) -> None:
        if event not in WATCHED:
            return
        for p in _paths(args):
            if any(p == r or p.startswith(r + os.sep) for r in roots):
                fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.write(fd, f"{os.getpid()} {event} {p}\n".encode())
                os.close(fd)
                raise PermissionError(f"ray_guard: a worker touched the driver's folder: {event} {p}")

    sys.addaudithook(hook)
