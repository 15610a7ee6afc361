"""Feast's argument type checks: on where glue parses the feature repo, off where it only reads it back.

Feast wraps its definition classes in typeguard's @typechecked, which costs 2 s per process at
import (glue/adapters/feast.py `import_feast`). glue keeps the checks in the one process that
parses the repo's own definitions, where they name a wrong argument type, and skips them in every
other process. Both halves run in fresh interpreters: a test process has imported Feast already.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GLUE = str(Path(sys.executable).with_name("glue"))

# Whether FeatureView.__init__ was instrumented by typeguard, after the store was opened.
_INSTRUMENTED = """
import sys
from glue.adapters import feast
from glue.settings import get_settings
feast.open_store(get_settings(), parse_repo=sys.argv[1] == "parse")
from feast import FeatureView
print("TypeCheckMemo" in FeatureView.__init__.__code__.co_names)
import typeguard, typeguard._decorators
print(typeguard.typechecked is typeguard._decorators.typechecked)
"""


@pytest.mark.parametrize(("mode", "checked"), [("parse", True), ("read", False)])
def test_feast_is_checked_only_where_the_repo_is_parsed(tmp_project: Path, mode: str, checked: bool) -> None:
    proc = subprocess.run([sys.executable, "-c", _INSTRUMENTED, mode], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "GLUE_PROJECT_DIR": str(tmp_project)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    instrumented, decorator_restored = proc.stdout.split()
    assert instrumented == str(checked)
    assert decorator_restored == "True"  # typeguard itself is left as it was, for anyone else


def test_a_wrong_argument_type_in_the_repo_is_named_with_its_file_and_line(tmp_project: Path) -> None:
    definitions = tmp_project / "feature_repo" / "feature_definitions.py"
    lines = definitions.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip() == "ttl=SNAPSHOT_TTL,")
    lines[first] = lines[first].replace("ttl=SNAPSHOT_TTL", "ttl=3")  # an int where Feast wants a timedelta
    definitions.write_text("\n".join(lines) + "\n")
    view_line = max(i for i in range(first) if "FeatureView(" in lines[i]) + 1

    proc = subprocess.run([GLUE, "features"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GLUE_PROJECT_DIR": str(tmp_project), "TQDM_DISABLE": "1"})
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f"error: {definitions}:{view_line}: the feature repo's definitions do not load" in proc.stderr
    assert 'argument "ttl" (int)' in proc.stderr and "timedelta" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_project / ".glue" / "feast" / "registry.db").exists()  # nothing was registered
