"""The DVC adapter: run the pipeline, push data, and name the data version a model was built from.

`dvc repro` stays the pipeline's engine: glue runs DVC's own CLI (so the user sees DVC's output and
`dvc.yaml` stays the single definition) and reads `dvc.lock`, the file DVC writes to record the
exact content hash of every stage output.

Whatever path trains a model (`dvc repro`, an Airflow task, `glue simulate`, a notebook), the data it
reads is first made a DVC version of its own (:func:`snapshot`): DVC's own hash of the folder (the
``md5`` that dvc.lock would record for it), its files in the project's DVC cache, and pushed to the
profile's remote. Anyone can get it back with DVC's CLI from a pointer file (:func:`fetch`), so the
version on a model never depends on whether `dvc repro` last saw that data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from glue.errors import GlueError

LOCK_FILE = "dvc.lock"


def reproduce(project_dir: Path, *targets: str, force: bool = False, downstream: bool = False) -> None:
    """Run `dvc repro` in the project (the targets and, with `downstream`, every stage after them);
    a failing stage raises with DVC's exit code."""
    argv = [sys.executable, "-m", "dvc", "repro", *targets]
    if force:
        argv.append("--force")
    if downstream:
        argv.append("--downstream")
    _run_dvc(argv, project_dir, "dvc repro")


def push(project_dir: Path, remote: str | None = None) -> None:
    """Send the cached outputs to the DVC remote, so a colleague can `dvc pull` the same data."""
    argv = [sys.executable, "-m", "dvc", "push", "--quiet"]
    if remote:
        argv += ["--remote", remote]
    _run_dvc(argv, project_dir, "dvc push")


def ensure_remote(project_dir: Path, name: str, url: str) -> str:
    """Point the DVC remote `name` at the profile's URL (in .dvc/config.local, never committed).

    A plain directory is created first, since DVC expects a local remote to exist.
    """
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "dvc", "remote", "add", "--local", "--force", name, url]
    completed = subprocess.run(argv, cwd=project_dir, capture_output=True, text=True)
    if completed.returncode != 0:
        raise GlueError(f"cannot configure DVC remote '{name}' at {url}: {completed.stderr.strip()}")
    return name


@dataclass(frozen=True)
class DataVersion:
    """One folder of data as DVC versions it: retrievable from `remote` by its hash."""

    path: str  # relative to the project, as dvc.yaml and dvc.lock name it
    md5: str  # DVC's hash, "<md5>.dir" for a folder: what dvc.lock records for the same content
    files: int
    size: int  # bytes
    remote: str  # the remote's URL it was pushed to


def snapshot(project_dir: Path, path: Path, remote_name: str, remote_url: str) -> DataVersion | None:
    """Make `path` as it is now a DVC version: hash it the way DVC hashes an output, store its files
    in the project's DVC cache and push them to the remote. None outside a DVC repository or for a
    path outside the project (DVC versions only what is inside its repository).

    Cheap when nothing changed: DVC's state database keeps each file's hash by inode and mtime,
    and only objects missing from the cache or the remote are copied. Runs inside `dvc repro` too
    (DVC releases its repository lock while a stage's command runs).
    """
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.transfer import transfer

    path = path.resolve()
    try:
        relative = path.relative_to(project_dir.resolve())
    except ValueError:
        return None
    if not (project_dir / ".dvc").is_dir():
        return None
    if not path.exists():
        raise GlueError(f"{path}: no data to version (the data a model reads must exist)")
    ensure_remote(project_dir, remote_name, remote_url)
    try:
        repo = Repo(str(project_dir))
    except NotDvcRepoError:
        return None
    with repo, repo.lock:
        odb = repo.cache.local
        staging, meta, obj = build(odb, str(path), odb.fs, "md5", ignore=repo.dvcignore)
        transfer(staging, odb, {obj.hash_info}, shallow=False, hardlink=False)
        objects = {obj.hash_info}
        if obj.hash_info.isdir:
            objects |= {oid for _, _, oid in obj}  # the folder's listing and every file in it
        result = repo.cloud.push(objects, remote=remote_name)
    if result.failed:
        raise GlueError(f"dvc push of {relative} to remote '{remote_name}' ({remote_url}) failed for "
                        f"{len(result.failed)} object(s); the data version would not be retrievable")
    return DataVersion(path=relative.as_posix(), md5=obj.hash_info.value, files=meta.nfiles or 1,
                       size=meta.size or 0, remote=remote_url)


def fetch(md5: str, remote_url: str, dest: Path) -> Path:
    """Get a data version back from a remote into `dest` with DVC's own CLI: a scratch DVC
    repository with a pointer file (``<name>.dvc``: the hash, nothing else) and `dvc pull`.

    The same works by hand: write such a file next to any DVC repository configured with the
    remote and run `dvc pull <name>.dvc`.
    """
    if dest.exists():
        raise GlueError(f"{dest}: exists; fetch a data version into a new folder")
    if "://" not in remote_url:
        remote_url = str(Path(remote_url).resolve())
    with tempfile.TemporaryDirectory(prefix="glue-dvc-fetch-") as tmp:
        scratch = Path(tmp)
        dvc = [sys.executable, "-m", "dvc"]
        for argv in (["init", "--no-scm", "-q"], ["remote", "add", "-d", "origin", remote_url],
                     ["config", "core.analytics", "false"]):
            _run_quiet([*dvc, *argv], scratch, "dvc " + argv[0])
        (scratch / "data.dvc").write_text(f"outs:\n- md5: {md5}\n  hash: md5\n  path: data\n")
        _run_quiet([*dvc, "pull", "-q", "data.dvc"], scratch,
                   f"dvc pull of data version {md5} from {remote_url}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(scratch / "data"), dest)
    return dest


def stage_env() -> dict[str, str]:
    """The environment for DVC: this interpreter's bin dir first on PATH.

    The stages of dvc.yaml call `glue ...`; run as `.venv/bin/glue run` without an activated
    environment, a shell would not find `glue` (or would find another install).
    """
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return {**os.environ, "PATH": bin_dir + (os.pathsep + path if path else "")}


def data_version(project_dir: Path, path: str = "data/raw") -> str | None:
    """The DVC content hash (md5 of the directory listing) of `path`, or None if DVC has none yet.

    Looked up in dvc.lock (an output of a stage) and then in `<path>.dvc` (a `dvc add`-ed path),
    so it works whether the raw data is generated by a stage or added by hand.
    """
    lock = project_dir / LOCK_FILE
    if lock.is_file():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []):
                if out.get("path") == path:
                    return out.get("md5")
    dvc_file = project_dir / f"{path}.dvc"
    if dvc_file.is_file():
        for out in (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", []):
            return out.get("md5")
    return None


def _run_dvc(argv: list[str], project_dir: Path, what: str) -> None:
    completed = subprocess.run(argv, cwd=project_dir, env=stage_env())
    if completed.returncode != 0:
        raise GlueError(f"{what} failed in {project_dir} (exit {completed.returncode}); see above")


def _run_quiet(argv: list[str], cwd: Path, what: str) -> None:
    completed = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=stage_env())
    if completed.returncode != 0:
        raise GlueError(f"{what} failed (exit {completed.returncode}): "
                        f"{(completed.stderr or completed.stdout).strip()[-2000:]}")
