"""Where the course keeps what it computes, and how it writes files without losing them.

Everything cached (decoded datasets, checkpoints) lives under the project's `data/`
folder, or under COURSE_DATA_HOME when that is set. Files are written to a temporary
name in the same folder and renamed into place, so a crash mid-write leaves the
previous file whole (and a temporary file a killed writer left behind is removed by the
next write, once it is an hour old). `checked_save` also stores a SHA-256 digest of the
contents; `checked_load` recomputes it, and moves a file that is unreadable or whose
digest differs aside (to `<name>.corrupt`), saying which file, so that it is rebuilt.
`exclusive(path)` lets one process build a file while others that want it wait, then load it.
Results and records are strict JSON (`write_json`: no NaN, written the same atomic way); a
full disk is one clear error (`DiskFull`) that names the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import tempfile
import time
from pathlib import Path

try:
    import fcntl  # POSIX; elsewhere two processes may both build the same file (each write stays atomic)
except ImportError:
    fcntl = None

import torch

DATA_HOME_ENV = "COURSE_DATA_HOME"
_REPO_DATA = Path(__file__).resolve().parent.parent / "data"


STALE_SECONDS = 3_600  # a temporary file this old belongs to a writer that died
_VERIFIED: set[tuple[str, int, int]] = set()  # (path, modification time, size) whose digest matched


def data_home() -> Path:
    """The folder for caches and checkpoints (created on first use)."""
    home = Path(os.environ.get(DATA_HOME_ENV) or _REPO_DATA)
    if home.exists() and not home.is_dir():
        raise NotADirectoryError(f"{DATA_HOME_ENV}={home} is a file; point it at a folder for the "
                                 "course's caches and checkpoints")
    home.mkdir(parents=True, exist_ok=True)
    return home


class DiskFull(OSError):
    """The disk had no room for a file the course writes: one sentence, the file named."""


def atomic_write(data: bytes, path: Path) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename, so a
    crash or a full disk leaves the previous file whole; a full disk raises `DiskFull`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        if time.time() - leftover.stat().st_mtime > STALE_SECONDS:
            leftover.unlink(missing_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(error.errno, f"no space left on the disk to write {path} ({len(data):,} bytes); "
                                        f"free some space and run it again (the previous file, if any, is "
                                        f"unchanged)") from None
        raise


def atomic_save(obj, path: Path) -> None:
    """torch.save to `path`, serialised in memory first, then `atomic_write`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(buffer.getvalue(), Path(path))


def plain_json(value):
    """`value` with every non-finite float made None: strict JSON (NaN and Infinity are not)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(item) for item in value]
    return value


def write_json(value, path: Path) -> None:
    """`value` as strict, indented JSON (non-finite floats as null), written atomically."""
    atomic_write((json.dumps(plain_json(value), indent=2, allow_nan=False) + "\n").encode(), Path(path))


def read_json(path: Path):
    """The JSON at `path`, or a ValueError naming the file when it cannot be read as JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); it may be truncated") from error


def move_aside(path: Path, problem: str) -> Path:
    """Move a damaged file to `<name>.corrupt`, saying which file and why; returns where."""
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    print(f"!!! {path}: {problem}; moved aside to {aside.name}", flush=True)
    return aside


@contextlib.contextmanager
def exclusive(path: Path, wait: bool = True):
    """Holds an exclusive lock on `<path>.lock`: two processes that would train the same
    checkpoint (a sweep's workers, parallel tests) train it once, the second loading what
    the first saved. The lock goes with the process, even a killed one. Yields True once
    held; with `wait=False` it yields False at once when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
        yield True


def digest(obj) -> str:
    """SHA-256 of the contents of nested dicts, lists and tensors (keys in sorted order)."""
    hasher = hashlib.sha256()

    def feed(value):
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().reshape(-1)  # a 0-d tensor (num_batches_tracked) as one element
            hasher.update(f"{value.dtype}{tuple(value.shape)}".encode())
            hasher.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                hasher.update(str(key).encode())
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            for item in value:
                feed(item)
        else:
            hasher.update(repr(value).encode())
    feed(obj)
    return hasher.hexdigest()


def checked_save(obj, path: Path) -> None:
    """atomic_save of `obj` with the digest of its contents."""
    atomic_save({"contents": obj, "sha256": digest(obj)}, path)


def checked_load(path: Path, **load_arguments):
    """What checked_save stored at `path`, or None when there is none, or when the file is
    unreadable or its contents no longer match their digest: then it is moved aside to
    `<name>.corrupt` and a message names it, so that the caller rebuilds it."""
    if not path.exists():
        return None
    stamp = (str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size)
    try:
        stored = torch.load(path, weights_only=True, **load_arguments)
        problem = None if isinstance(stored, dict) and "sha256" in stored else "it has no checksum"
        if problem is None and stamp not in _VERIFIED and digest(stored["contents"]) != stored["sha256"]:
            problem = "its contents do not match their checksum"
    except Exception as error:  # noqa: BLE001 (any unreadable file: truncated, random bytes, empty)
        problem = f"it cannot be read ({type(error).__name__})"
    if problem is None:
        _VERIFIED.add(stamp)  # the same file again in this process: its digest is not recomputed
        return stored["contents"]
    move_aside(path, f"{problem}, so it is rebuilt")
    return None
