"""Atomic writes leave the old file or the new one, never a torn one nor a stray temporary file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from glue import atomic


def test_writes_replace_the_file_and_create_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "metrics" / "gate.json"
    atomic.write_json(path, {"b": 1, "a": 2}, indent=2, sort_keys=True)
    assert path.read_text() == json.dumps({"a": 2, "b": 1}, indent=2) + "\n"
    atomic.write_text(path, "second")
    atomic.write_bytes(tmp_path / "raw.bin", b"\x00\x01")
    assert path.read_text() == "second" and (tmp_path / "raw.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["gate.json"]


def test_a_failed_writer_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "day.parquet"
    path.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic.write_with(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["day.parquet"]


def test_the_file_gets_the_usual_mode_not_a_private_one(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "metrics.prom", "x 1\n")
    finally:
        os.umask(umask)
    assert (tmp_path / "metrics.prom").stat().st_mode & 0o777 == 0o644


def test_a_writer_killed_mid_write_leaves_the_old_file_and_the_next_write_sweeps_its_temp(
        tmp_path: Path) -> None:
    """SIGKILL between the temporary file and the rename: the target is intact; the stray temporary
    file (named after the dead process) goes with the next write of that file; a live writer's stays."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "evaluation.json"
    atomic.write_json(path, {"version": "1"})
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, sys; from pathlib import Path; from glue import atomic\n"
        "atomic._fsync = lambda p: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic.write_json(Path({str(path)!r}), {{'version': '2', 'pad': 'x' * 100000}})")])
    assert killed.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].stat().st_size > 100000  # the whole new body, never renamed
    assert json.loads(path.read_text()) == {"version": "1"}
    live = tmp_path / f".evaluation.json.{os.getpid()}.feedbeef.tmp"  # a writer still at work
    live.write_text("busy")
    atomic.write_json(path, {"version": "3"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "evaluation.json"]
    assert atomic.remove_leftovers(tmp_path) == []  # the live one is never taken
