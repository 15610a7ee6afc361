"""The project's own code, named in params.yaml and run by the glue.

A project may bring a transformation step (`features.transform`) and a data generator
(`data.generator`). Both are named as ``module:function`` (an importable module) or
``path/to/file.py:function`` (a file of the project, relative to its directory), as Kedro and
Airflow name callables; loading one never imports anything of the glue's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from glue.errors import SettingsError


def load_callable(spec: str, project_dir: Path, key: str) -> Callable[..., Any]:
    """The function `spec` names; `key` is its params.yaml key, for the error message."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise SettingsError(f"params.yaml {key}: '{spec}' is not 'module:function' or 'path.py:function'")
    if where.endswith(".py"):
        path = Path(where) if Path(where).is_absolute() else project_dir / where
        if not path.is_file():
            raise SettingsError(f"params.yaml {key}: no file {path}")
        module_name = f"glue_project_{abs(hash(path.resolve()))}_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise SettingsError(f"params.yaml {key}: cannot load {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
        module_spec.loader.exec_module(module)
    else:
        if str(project_dir) not in sys.path:
            sys.path.insert(0, str(project_dir))
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise SettingsError(f"params.yaml {key}: cannot import module '{where}': {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise SettingsError(f"params.yaml {key}: '{where}' has no function '{name}'")
    return function
