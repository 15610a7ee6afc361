"""Test-only fault injection: SIGKILL a `glue` process at a named point of its code.

The kill-matrix tests (tests/integration/test_faults.py) put this folder first on PYTHONPATH, so
every Python process they start, `dvc repro` and the `glue` commands its stages run included,
imports this module at start-up (Python's `sitecustomize` hook). It does nothing unless
GLUE_KILL_AT is set, and then only in a `glue` process running that command:

    GLUE_KILL_AT="<glue command> <module>:<function or Class.method> <before|after> <nth call>"
    GLUE_KILL_AT="train glue.adapters.mlflow:register_model after 1"

When the module is first imported, the function is wrapped; its nth call kills the process with
SIGKILL (no cleanup, no atexit, no finally: what a power cut or the OOM killer does) before or
after the real call. No code of glue knows about it.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import signal
import sys
from typing import Any


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(module: Any, qualname: str, when: str, nth: int) -> None:
    *owners, name = qualname.split(".")
    owner = module
    for part in owners:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = 0

    @functools.wraps(original)
    def killing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth and when == "before":
            _kill()
        result = original(*args, **kwargs)
        if calls == nth and when == "after":
            _kill()
        return result

    setattr(owner, name, killing)


class _KillFinder(importlib.abc.MetaPathFinder):
    """Wraps the target once its module has executed (the module is imported lazily by glue)."""

    def __init__(self, module: str, qualname: str, when: str, nth: int) -> None:
        self.module, self.qualname, self.when, self.nth = module, qualname, when, nth

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.module:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _wrap(module, self.qualname, self.when, self.nth)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _install(spec: str) -> None:
    command, target, when, nth = spec.split()
    if os.path.basename(sys.argv[0]) != "glue" or command not in sys.argv[1:]:
        return
    module, qualname = target.split(":")
    if when not in ("before", "after"):
        raise SystemExit(f"GLUE_KILL_AT: '{when}' is not before|after")
    if module in sys.modules:
        _wrap(sys.modules[module], qualname, when, int(nth))
    else:
        sys.meta_path.insert(0, _KillFinder(module, qualname, when, int(nth)))


if os.environ.get("GLUE_KILL_AT"):
    _install(os.environ["GLUE_KILL_AT"])
