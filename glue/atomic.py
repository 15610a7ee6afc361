"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Why one helper: every stage output that another process reads (DVC metrics, the gate's verdict,
the day's batches, feature tables, batch scores, the Prometheus textfile) is written the same way:
to a temporary file in the same folder (so the rename cannot cross file systems), flushed to disk,
then renamed over the target with ``os.replace``, which POSIX makes atomic. A failed write removes
its temporary file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Replace `path` with `text`, atomically."""
    write_bytes(path, text.encode(encoding))


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, atomically."""
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_json(path: Path, payload: Any, **dumps: Any) -> None:
    """Replace `path` with `payload` as JSON and a final newline (``dumps`` go to json.dumps)."""
    write_text(path, json.dumps(payload, **dumps) + "\n")


def write_with(path: Path, writer: Callable[[Path], object]) -> None:
    """Replace `path` with what ``writer(tmp)`` writes to the path it is given (Parquet, CSV...)."""
    with replacing(path) as tmp:
        writer(tmp)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on success it is synced and renamed over `path`.

    The folder is created if needed. The temporary name starts with a dot and ends in ``.tmp``, so
    globs for the real files (``*.parquet``, ``*.json``) never pick it up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, path.name)  # of an earlier writer of this file, killed mid-write
    tmp = _new_file(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def remove_leftovers(folder: Path, name: str = "*") -> list[Path]:
    """Delete the temporary files of writers killed mid-write in `folder` (of the file `name`, or
    of every file); returns what went.

    A SIGKILL between writing the temporary file and the rename leaves it behind (the target is
    intact). Its name carries the writer's process id: only files of processes that no longer
    run are removed, so a writer at work in another process keeps its file.
    """
    gone = []
    for tmp in Path(folder).glob(f".{name}.*.tmp"):
        parts = tmp.name.rsplit(".", 3)  # ".<name>", pid, token, "tmp"
        if len(parts) == 4 and parts[1].isdigit() and not process_running(int(parts[1])):
            tmp.unlink(missing_ok=True)
            gone.append(tmp)
    return gone


def process_running(pid: int) -> bool:
    """Whether a process of this host with that id runs (one of another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _new_file(path: Path) -> Path:
    """An empty file beside `path` with a name no other writer uses, created with the usual mode.

    Not tempfile.mkstemp: its files are private (0600), and the rename would make the target so.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
