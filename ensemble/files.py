"""File safety and durable writes shared by every stage.

No pickle weights, ever; no path that leaves its root; every write that matters is atomic (a
temporary file in the same folder, fsync, ``os.replace``, fsync of the folder) and keeps the
user's umask.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
import signal
import stat
import tempfile
import zipfile
from pathlib import Path

from .errors import EnsembleError, shown

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
FAULT_ENV = "ENSEMBLE_FAULT_AT"
STOP_ENV = "ENSEMBLE_STOP_AT"
_fault_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    """A deterministic kill point for the crash tests (tests/adversarial/): with
    ``ENSEMBLE_FAULT_AT=<name>`` (or ``<name>#<n>`` for its n-th passage, counting from 1) the process
    kills itself with SIGKILL here, as ``kill -9`` would, before the step that follows. Unset (as
    for every user), it does nothing. Named points sit before each rename or replace that matters.
    ``ENSEMBLE_STOP_AT=<name>[#<n>]`` stops the process there instead (SIGSTOP, holding its locks)
    until the test continues it (SIGCONT): how the concurrency tests hold a live writer in place."""
    for env, sig in ((FAULT_ENV, signal.SIGKILL), (STOP_ENV, signal.SIGSTOP)):
        want = os.environ.get(env)
        if not want:
            continue
        point, _, nth = want.partition("#")
        if point != name:
            continue
        key = f"{env}:{name}"
        _fault_counts[key] = _fault_counts.get(key, 0) + 1
        if _fault_counts[key] == (int(nth) if nth else 1):
            os.kill(os.getpid(), sig)


def refuse_pickles(directory: Path) -> None:
    """Raise if ``directory`` holds a pickle file: loading one can run arbitrary code."""
    for p in sorted(Path(directory).rglob("*")):
        if p.suffix.lower() in PICKLE_SUFFIXES:
            raise EnsembleError(
                f"{p}: pickle files are refused (loading them can run arbitrary code). Convert the "
                "weights to safetensors first, e.g. in Python: `from safetensors.torch import save_file; "
                "save_file(torch.load(PATH, weights_only=True), 'model.safetensors')` "
                "(for a transformers model: `AutoModel.from_pretrained(DIR).save_pretrained(DIR)`), "
                "then delete the pickle file."
            )


# safetensors dtypes and their sizes in bits (the format's list, safetensors 0.4-0.8)
SAFETENSORS_DTYPES = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6,
                      "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
                      "F64": 64, "I64": 64, "U64": 64, "C64": 64}
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")   # a pickle (protocol 2+) or torch.save's zip of pickles


def check_safetensors(path: str | Path) -> None:
    """Refuse a weights file that is not a whole safetensors file before any loader reads it: missing,
    a pickle (or torch zip) under the name, a header length beyond the file, a header that is not
    a JSON object of tensors, an unknown dtype, or data offsets outside the file. The error names
    the file and what was found."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fp:
            head = fp.read(9)
            if len(head) < 9:
                raise EnsembleError(f"{path}: {size} bytes, too short for a safetensors file (truncated?)")
            # a header length may begin with pickle's 0x80 too: a safetensors header is JSON from byte 8
            if head[8:9] != b"{" and head.startswith(PICKLE_MAGIC):
                raise EnsembleError(f"{path}: a pickle (torch.save) file under a .safetensors name; refused (loading "
                                    "a pickle can run arbitrary code); save the weights with safetensors")
            (n,) = struct.unpack("<Q", head[:8])
            fp.seek(8)
            if n > size - 8:
                raise EnsembleError(f"{path}: safetensors header length {n:,} bytes exceeds the file's {size:,} "
                                    "bytes (truncated or not a safetensors file)")
            raw = fp.read(n)
    except FileNotFoundError:
        raise EnsembleError(f"{path}: missing (the model's weights); expected a safetensors file") from None
    except OSError as exc:
        raise EnsembleError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    _check_safetensors_header(path, raw, size - 8 - n)


def _check_safetensors_header(path: Path, raw: bytes, data_size: int) -> None:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:   # UnicodeDecodeError is a ValueError
        raise EnsembleError(f"{path}: safetensors header is not valid UTF-8 JSON ({str(e)[:200]}); the file is damaged") from None
    if not isinstance(header, dict):
        raise EnsembleError(f"{path}: safetensors header is not a JSON object; the file is damaged")
    for name, t in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {shown(name)}"
        if not isinstance(t, dict) or t.get("dtype") not in SAFETENSORS_DTYPES:
            raise EnsembleError(f"{where}: unknown dtype {shown(t.get('dtype') if isinstance(t, dict) else t)}; "
                                "the file is damaged")
        shape, offsets = t.get("shape"), t.get("data_offsets")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)
                and isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise EnsembleError(f"{where}: shape or data_offsets malformed; the file is damaged")
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        if not 0 <= begin <= end <= data_size or end - begin != (count * SAFETENSORS_DTYPES[t["dtype"]] + 7) // 8:
            raise EnsembleError(f"{where}: data offsets {offsets} do not fit its shape {shape} within the file's "
                                f"{data_size:,} data bytes (truncated or damaged)")


ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}


def read_zip_member(zf: zipfile.ZipFile, name: str, path: str | Path, limit: int) -> bytes:
    """The bytes of member ``name`` of the zip ``zf`` (the file ``path``), its entry checked before it
    is read: not encrypted, stored or deflated, at most ``limit`` bytes (as recorded, and as read:
    a lying size is caught too). KeyError when there is no such member."""
    info = zf.getinfo(name)
    where = f"{path}: member {shown(name)}"
    if info.flag_bits & 0x1:
        raise EnsembleError(f"{where} is encrypted; expected a plain zip (`ensemble submit` writes one)")
    if info.compress_type not in ZIP_METHODS:
        raise EnsembleError(f"{where}: compression method {info.compress_type} is not supported; expected "
                            f"{' or '.join(ZIP_METHODS.values())}")
    if info.file_size > limit:
        raise EnsembleError(f"{where}: {info.file_size:,} bytes, more than the {limit:,} expected")
    try:
        with zf.open(info) as fp:
            data = fp.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError, NotImplementedError) as e:
        raise EnsembleError(f"{where}: cannot be read ({e}); the zip is damaged") from None
    if len(data) > limit or len(data) != info.file_size:
        raise EnsembleError(f"{where}: unpacks to more bytes than its header's {info.file_size:,} (at most {limit:,} "
                            "expected); the zip is damaged or crafted (a zip bomb?); refused")
    return data


def disk_full(e: OSError, path: str | Path, kept: str = "nothing stored was changed") -> EnsembleError | None:
    """The error to raise for ``e`` when it is a full disk (ENOSPC, EDQUOT): naming ``path``, saying
    that the disk is full and what was kept; None for any other error."""
    if getattr(e, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
        return None
    writing = getattr(e, "filename", None)
    where = f" (writing {writing})" if writing and str(writing) != str(path) else ""
    return EnsembleError(f"{path}: the disk is full{where}; {kept}; free some space and run the command again")


def check_inside(root: Path, path: Path, what: str) -> None:
    """Refuse symlinks and paths that leave ``root``."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root.resolve()):
            raise EnsembleError(f"{path}: symlink to {target} leaves {root}; refused ({what})")
    if not path.resolve().is_relative_to(root.resolve()):
        raise EnsembleError(f"{path}: leaves {root}; refused ({what})")


def make_folder(path: Path, what: str) -> None:
    """Make the output folder ``path`` (``--out``) and its parents; an existing file there is an
    error naming it and ``what`` the folder is for."""
    if path.exists() and not path.is_dir():
        raise EnsembleError(f"--out {path}: is a file, not a folder; expected a folder for {what} "
                            "(made when missing)")
    path.mkdir(parents=True, exist_ok=True)


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def read_input(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of a file given as input, the one way every reader of a user's file reads it: a
    FIFO, device, socket or folder is refused, naming it, before anything is read (it is opened
    non-blocking, so a FIFO with no writer never hangs the command); with ``limit``, at most
    ``limit + 1`` bytes are read (the caller refuses a longer file). A missing or unreadable file
    raises its OSError, for the caller's own message."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise EnsembleError(f"{path}: {kind}, not a regular file; refused (reading it could wait forever or "
                                "never end); expected a file")
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as fp:
            return fp.read(-1 if limit is None else limit + 1)
    finally:
        os.close(fd)


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fp:
            while True:
                chunk = fp.read(chunk_size)
                if not chunk:
                    break
                h.update(chunk)
    except OSError as exc:
        raise EnsembleError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return h.hexdigest()


def remove_quiet(*paths: str | Path) -> None:
    """Remove files of our own that are still there: a clean-up that must not hide the error
    being handled."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def stage_bytes(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to a new hidden temporary file in ``folder`` (fsynced, umask permissions);
    the caller renames it into place or removes it. Used for all-or-nothing folder updates."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fchmod(fp.fileno(), 0o666 & ~_umask())
            os.fsync(fp.fileno())
    except BaseException:
        remove_quiet(tmp)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = stage_bytes(path.parent, path.name, data)
    try:
        fault_point("atomic-write")
        os.replace(tmp, path)
    except BaseException:
        remove_quiet(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some filesystems refuse)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
