"""`glue init`: a new project around a team's existing Feast repo, as `feast init` and `kedro new` do.

Why: a project is configuration, not code (README: Architecture). Everything glue needs beyond the
team's Feast repo is derived from what that repo declares: the model specs of params.yaml name its feature
services and label views, the validation suite takes its columns and dtypes from the Feast schema,
and the pipeline (dvc.yaml, dags/) is the same for every project, copied from the demo project that
ships with glue. Everything is checked before anything is written, and an existing project is never
overwritten, so a failed `glue init` leaves the folder as it was.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from glue.errors import GlueError
from glue.settings import ESTIMATORS, PARAMS_FILE, TASK_METRICS, Task

if TYPE_CHECKING:
    from glue.adapters.feast import FieldInfo, RepoDescription

PIPELINE_FILE = "dvc.yaml"
DAGS_DIR = "dags"
FEATURE_REPO_DIR = "feature_repo"  # where the settings look for the Feast repo (GLUE_FEAST_REPO)
TASKS: tuple[str, ...] = tuple(TASK_METRICS)
DEFAULT_EVENTS = "events"
DEFAULT_TIMESTAMP = "event_timestamp"

# The glue installation's own project (the demo): the pipeline every project shares is copied from it.
DEMO_PROJECT = Path(__file__).resolve().parents[1]
# Stages of the demo's pipeline that only the demo has: its data generator. A project without a
# generator versions its own batches with `dvc add data/raw` instead.
_DEMO_ONLY_COMMANDS = ("glue demo-data",)
_DEMO_ONLY_STAGES = ("demo_data",)


@dataclass(frozen=True)
class ModelRequest:
    """One model asked for on the command line (`--name --feature-service --label --task`)."""

    name: str
    feature_service: str
    label: str  # VIEW:FIELD, a field of one of the repo's label views
    task: str | None = None  # None: from the label field's type (integer or bool: binary, float: regression)


@dataclass(frozen=True)
class InitResult:
    """What `glue init` made: the files written, the models declared and what to do next."""

    project_dir: Path
    feature_repo: Path  # the source repo given
    repo_copied: bool  # copied into <project>/feature_repo (False: it already was there)
    models: tuple[str, ...]  # empty: params.yaml holds a commented template to fill in
    validation_columns: tuple[str, ...]
    files: tuple[str, ...]  # written, relative to the project
    vcs: str  # "git + dvc", "dvc (no git)"
    warnings: tuple[str, ...] = ()

    def summary(self) -> str:
        models = ", ".join(self.models) if self.models else "none yet (fill in the template under models:)"
        lines = [f"created project {self.project_dir} ({self.vcs})",
                 f"  feature repo: {self.project_dir / FEATURE_REPO_DIR}"
                 + (f" (copied from {self.feature_repo})" if self.repo_copied else ""),
                 f"  models: {models}",
                 f"  validation columns: {', '.join(self.validation_columns)}",
                 f"  files: {', '.join(self.files)}"]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines.append(f"next: see {self.project_dir / 'README.md'}")
        return "\n".join(lines)


def model_requests(names: Sequence[str], feature_services: Sequence[str], labels: Sequence[str],
                   tasks: Sequence[str] = ()) -> list[ModelRequest]:
    """Pair the repeatable command-line options by position, one group per model.

    The counts must agree (tasks may be left out altogether); a mismatch is a mistake the user must
    see, not one to guess around.
    """
    counts = {"--name": len(names), "--feature-service": len(feature_services), "--label": len(labels)}
    if len(set(counts.values())) != 1:
        given = ", ".join(f"{k} x{v}" for k, v in counts.items())
        raise GlueError(f"give --name, --feature-service and --label once per model, in the same order "
                        f"(got {given})")
    if tasks and len(tasks) != len(names):
        raise GlueError(f"give --task once per model or not at all (got {len(tasks)} for {len(names)} "
                        "models)")
    if len(set(names)) != len(names):
        raise GlueError(f"--name: each model needs its own name (got {', '.join(names)})")
    return [ModelRequest(name=n, feature_service=s, label=lab, task=tasks[i] if tasks else None)
            for i, (n, s, lab) in enumerate(zip(names, feature_services, labels, strict=True))]


def init_project(project_dir: Path, feature_repo: Path, models: Sequence[ModelRequest] = (), *,
                 events: str = DEFAULT_EVENTS, git: bool = False) -> InitResult:
    """Make a new project in `project_dir` around the Feast repo `feature_repo`.

    Writes params.yaml (a model spec per request, or a commented template), the shared pipeline
    (dvc.yaml, dags/), README.md with the next steps, .gitignore and .dvcignore; copies the repo
    into <project>/feature_repo (where the settings look for it) unless it already is there; runs
    `dvc init` (with `git init` first when `git`). Refuses an existing project.
    """
    from glue.adapters import feast

    project_dir = Path(project_dir).resolve()
    source_repo = Path(feature_repo).resolve()
    for name in (PARAMS_FILE, PIPELINE_FILE):
        if (project_dir / name).exists():
            raise GlueError(f"{project_dir / name} already exists: {project_dir} holds a project; glue init "
                            "never overwrites one (choose an empty or new directory)")
    if not (source_repo / "feature_store.yaml").is_file():
        raise GlueError(f"feature repo {source_repo}: no feature_store.yaml (is it a Feast repo?)")
    target_repo = project_dir / FEATURE_REPO_DIR
    copy_repo = target_repo != source_repo
    if copy_repo and target_repo.exists():
        raise GlueError(f"{target_repo} already exists and is not the feature repo {source_repo}; "
                        "remove it or pass it as --feature-repo")

    repo = feast.describe_repo(source_repo)
    if not repo.feature_services:
        raise GlueError(f"feature repo {source_repo} has no feature service: a model is trained and served "
                        "on one (declare a feast.FeatureService over its feature views)")
    specs = [_model_spec(repo, request) for request in models]
    columns, event_id, timestamp = _validation_columns(repo, specs)
    demo_events = _demo_events()

    # Everything is known to be right: write.
    project_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    if copy_repo:
        shutil.copytree(source_repo, target_repo,
                        ignore=shutil.ignore_patterns("__pycache__", ".git", ".ipynb_checkpoints", "*.db",
                                                      "*.db-journal"))
    shutil.copytree(DEMO_PROJECT / DAGS_DIR, project_dir / DAGS_DIR, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    files.append(f"{DAGS_DIR}/")
    params_text = _params_text(repo, specs, columns, events=events, event_id=event_id, timestamp=timestamp)
    (project_dir / PARAMS_FILE).write_text(params_text)
    pipeline = _pipeline_text((DEMO_PROJECT / PIPELINE_FILE).read_text(), demo_events=demo_events,
                              events=events, repo_files=_repo_files(target_repo, project_dir),
                              params_keys=set(yaml.safe_load(params_text)))
    (project_dir / PIPELINE_FILE).write_text(pipeline)
    (project_dir / ".gitignore").write_text(_GITIGNORE)
    (project_dir / ".dvcignore").write_text(_DVCIGNORE)
    (project_dir / "README.md").write_text(
        _readme(project_dir, source_repo, repo, specs, columns, events=events, git=git))
    files += [PARAMS_FILE, PIPELINE_FILE, "README.md", ".gitignore", ".dvcignore"]
    if copy_repo:
        files.append(f"{FEATURE_REPO_DIR}/")
    vcs = _init_vcs(project_dir, git=git)
    return InitResult(
        project_dir=project_dir, feature_repo=source_repo, repo_copied=copy_repo,
        models=tuple(s["name"] for s in specs), validation_columns=tuple(columns),
        files=tuple(files), vcs=vcs, warnings=tuple(_source_warnings(repo, target_repo, project_dir)),
    )


# --- model specs and the validation suite, from the repo ------------------------------------------


def _model_spec(repo: RepoDescription, request: ModelRequest) -> dict[str, Any]:
    """One entry of `models:`, checked against what the repo declares."""
    services = ", ".join(s.name for s in repo.feature_services)
    if repo.service(request.feature_service) is None:
        raise GlueError(f"--feature-service {request.feature_service}: feature repo {repo.path} has no "
                        f"feature service '{request.feature_service}' (feature services: {services})")
    view_name, sep, field_name = request.label.partition(":")
    if not sep or not view_name or not field_name:
        raise GlueError(f"--label {request.label}: expected VIEW:FIELD (a label view and its label field)")
    labels = ", ".join(v.name for v in repo.label_views) or "none"
    view = repo.label_view(view_name)
    if view is None:
        raise GlueError(f"--label {request.label}: feature repo {repo.path} has no label view '{view_name}' "
                        f"(label views: {labels})")
    field = view.field(field_name)
    if field is None:
        fields = ", ".join(f.name for f in view.fields) or "none"
        raise GlueError(f"--label {request.label}: no field '{field_name}' in label view '{view_name}' "
                        f"(fields: {fields})")
    task = request.task or _task_of(field, request)
    if task not in TASKS:
        raise GlueError(f"--task {task}: choose one of {', '.join(TASKS)}")
    return {"name": request.name, "feature_service": request.feature_service, "task": task,
            "label": {"view": view_name, "field": field_name}, "label_dtype": field.feast_type}


def _task_of(field: FieldInfo, request: ModelRequest) -> Task:
    """A label's task from its type: a 0/1 or true/false label is binary, a float one a regression."""
    if field.dtype in ("int", "bool"):
        return "binary_classification"
    if field.dtype == "float":
        return "regression"
    raise GlueError(f"--label {request.label}: a {field.feast_type} label fits no task glue knows; "
                    f"give --task ({' | '.join(TASKS)})")


def _validation_columns(repo: RepoDescription, specs: list[dict[str, Any]]
                        ) -> tuple[dict[str, dict[str, Any]], str | None, str]:
    """The columns every raw event batch must carry, with their rules and where each comes from.

    An event carries what scoring it needs: the join keys of its feature services' entities, the
    fields of their request sources, its event time, and the keys its labels join on. Their dtypes
    are the Feast types; keys and timestamps must not be null. A label key that is no entity key of
    the service names the event itself: it becomes data.event_id (unique). Without model specs the
    suite covers every feature service of the repo.
    """
    services = [s["feature_service"] for s in specs] or [s.name for s in repo.feature_services]
    label_views = [repo.label_view(s["label"]["view"]) for s in specs]
    sources = [v.source for v in (*label_views, *repo.feature_views) if v is not None and v.source]
    stamps = [s.timestamp_field for s in sources if s.timestamp_field]
    timestamp = stamps[0] if stamps else DEFAULT_TIMESTAMP
    columns: dict[str, dict[str, Any]] = {}

    def add(field: FieldInfo, why: str, **rule: Any) -> None:
        if field.name in columns or field.dtype is None:
            return
        columns[field.name] = {"rule": {"dtype": field.dtype, **rule},
                               "why": f"{why} (Feast {field.feast_type})"}

    service_keys: set[str] = set()
    for service in services:
        for key in repo.service_keys(service):
            service_keys.add(key.name)
            add(key, f"join key of feature service {service}", nullable=False)
    event_id = None
    for view in (v for v in label_views if v is not None):
        for key in view.entity_columns:
            if key.name not in service_keys:
                event_id = event_id or key.name
                add(key, f"the event's id: label view {view.name} is keyed by it", nullable=False,
                    unique=True)
    columns[timestamp] = {"rule": {"dtype": "datetime", "nullable": False}, "why": "the event time"}
    for service in services:
        for field in repo.service_request_fields(service):
            add(field, f"request field of feature service {service}", nullable=False)
    return columns, event_id, timestamp


def _source_warnings(repo: RepoDescription, target_repo: Path, project_dir: Path) -> list[str]:
    """Feature views whose file source lies outside data/features, where `glue features` writes."""
    features_dir = (project_dir / "data" / "features").resolve()
    out = []
    for view in repo.feature_views:
        source = view.source
        if source is None or source.path is None or "://" in source.path:
            continue
        path = Path(source.path)
        where = (path if path.is_absolute() else target_repo / path).resolve()
        if features_dir not in (where, *where.parents):
            out.append(f"source {source.name} of feature view {view.name} reads {where}, but glue writes "
                       f"feature tables to {features_dir}: point it there (e.g. ../data/features/...) or "
                       "set GLUE_FEATURES_DIR")
    return out


# --- the files ------------------------------------------------------------------------------------


def _params_text(repo: RepoDescription, specs: list[dict[str, Any]], columns: dict[str, dict[str, Any]],
                 *, events: str, event_id: str | None, timestamp: str) -> str:
    """params.yaml, commented like the demo's: what each value means and where it came from."""
    services = ", ".join(s.name for s in repo.feature_services)
    labels = "; ".join(f"{v.name} ({', '.join(f.name for f in v.fields)})" for v in repo.label_views) \
        or "none (use a labels source)"
    width = max(len(f"{name}: {_flow(c['rule'])}") for name, c in columns.items()) + 2
    lines = [
        f"# The tunables of this project, made by `glue init` around the Feast repo feature_repo/ "
        f"(project {repo.project}).",
        "# DVC tracks this file: changing a value re-runs only the stages that read it. Paths and service",
        "# addresses are not here: they come from the profile (GLUE_* environment variables).",
        "",
        "data:",
        "  # The raw data: one parquet (or CSV) batch per day of the events the models score, in",
        f"  # data/raw/{events}/; the validation gate below checks every batch.",
        f"  events: {events}",
        f"  event_id: {event_id or 'null'}".ljust(35)
        + ("# labels keyed by it are joined to the events" if event_id
           else "# the column naming one event, if labels are keyed by it"),
        "  # generator: path/to/file.py:function   # a function that writes demo batches (`glue demo-data`)",
        "",
        "validation:",
        "  # The raw-batch schema the Great Expectations gate checks, derived from the Feast schema: the",
        "  # join keys, event time and request fields an event needs to be scored. Add your own rules to",
        "  # any column (min, max, allowed: [...], unique: true) and columns of your own.",
        f"  timestamp_column: {timestamp}",
        "  min_rows: 1",
        "  max_future_seconds: 300         # clock skew tolerated for \"not in the future\"",
        "  allow_extra_columns: true       # batches may carry more columns (set false to pin them)",
        "  columns:",
        *(f"    {(name + ': ' + _flow(c['rule'])).ljust(width)}# {c['why']}" for name, c in columns.items()),
        "",
        "features:",
        "  # The project's own transformation step (raw batches -> the tables its feature views read,",
        "  # {Feast data source name: DataFrame}), run by `glue features` before `feast apply` and",
        "  # materialization: `path/to/file.py:function` or `module:function`; null: the sources are",
        "  # filled elsewhere.",
        "  transform: null",
        "",
        "models:",
    ]
    if specs:
        lines += ["  # One entry per model; the key is its registered model name. Every model has its own",
                  "  # champion, DVC stages, Airflow DAGs, monitoring and route."]
        for spec in specs:
            lines += _model_lines(spec)
    else:
        lines[-1] = "models: {}"
        lines += [
            "  # One entry per model, keyed by its registered model name. Fill in and uncomment:",
            "  # my-model:",
            f"  #   feature_service: {repo.feature_services[0].name}    # one of: {services}",
            "  #   task: binary_classification      # binary_classification | regression",
            "  #   label: {view: VIEW, field: FIELD}   # a label view's field; label views: " + labels,
            "  #   # or a labels source (parquet file or folder of the project):",
            "  #   # label: {source: data/raw/labels, field: FIELD, join_keys: [KEY],",
            "  #   #         event_timestamp: event_timestamp, known_at: label_timestamp}",
            "  #   estimator: {type: hist_gradient_boosting, params: {}}",
            "  #   gate: {metric: average_precision, min_improvement: 0.005, floors: {}}",
            "  # (or run glue init again with --name, --feature-service, --label and --task)",
        ]
    lines += [
        "",
        "defaults:",
        "  # Policies every model starts from; a model's own entries override them key by key",
        "  # (see README \"Bring your own project\"; glue's defaults apply to any key left out).",
        "  validation_days: 7               # the most recent labelled days, held out for the gate",
        "  gate:",
        "    bootstrap_samples: 1000",
        "    confidence: 0.95",
        "  serving: {}",
        "",
    ]
    return "\n".join(lines)


def _model_lines(spec: dict[str, Any]) -> list[str]:
    task = spec["task"]
    metric = next(iter(TASK_METRICS[task]))
    metrics = " | ".join(TASK_METRICS[task])
    return [
        f"  {spec['name']}:",
        "    # Trained and served on this Feast feature service: the training columns, the online",
        "    # request schema and the drift columns all come from it.",
        f"    feature_service: {spec['feature_service']}",
        f"    task: {task}",
        f"    label: {_flow(spec['label'])}   # a Feast LabelView field (Feast {spec['label_dtype']})",
        "    estimator:",
        f"      type: hist_gradient_boosting  # {' | '.join(ESTIMATORS[task])}",
        "      params: {}                    # passed to the scikit-learn estimator as they are",
        "    gate:",
        f"      metric: {metric}".ljust(36) + f"# {metrics}",
        "      min_improvement: 0.0".ljust(36) + "# the challenger must beat the champion by this much",
        "      floors: {}                    # absolute bounds any champion must meet, e.g. {"
        + f"{metric}: ...}}",
    ]


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()


def _pipeline_text(text: str, *, demo_events: str | None, events: str, repo_files: list[str],
                   params_keys: set[str]) -> str:
    """The demo's dvc.yaml made the project's: the same stages, minus what only the demo has.

    Dropped: the demo's generator stage, the dependencies on glue's own source files (glue is an
    installed package in the project) and params sections the project's params.yaml does not have;
    the demo's events folder becomes the project's, and the demo repo's files the project repo's.
    Comments survive (ruamel's round trip).
    """
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=2, sequence=4, offset=2)
    doc = rt.load(text)
    stages = doc.get("stages") or {}
    for name in list(stages):
        body = stages[name]
        cmd = str(body.get("cmd", "") or body.get("do", {}).get("cmd", ""))
        if name in _DEMO_ONLY_STAGES or any(c in cmd for c in _DEMO_ONLY_COMMANDS):
            del stages[name]
            continue
        body = body["do"] if "do" in body else body
        for key in ("deps", "outs", "metrics", "plots"):
            if key in body and body[key] is not None:
                _rewrite_paths(body[key], key == "deps", demo_events, events, repo_files)
        if body.get("params"):
            for i in reversed(range(len(body["params"]))):
                entry = body["params"][i]
                if isinstance(entry, str) and "${" not in entry and entry.split(".")[0] not in params_keys:
                    del body["params"][i]
            if not body["params"]:
                del body["params"]
    out = io.StringIO()
    rt.dump(doc, out)
    header = ("# The pipeline of this project, copied by `glue init` from the one glue ships with (the same\n"
              "# for every project): the raw batches in data/raw are versioned by `dvc add data/raw`.\n")
    return header + out.getvalue()


# glue's own source folders: the demo's stages depend on them (tests/unit/test_dvc_deps.py), a
# project that uses glue as an installed library does not have them
_GLUE_SOURCES = ("glue/", "monitoring/", "mlflow_plugins/")


def _rewrite_paths(entries: Any, deps: bool, demo_events: str | None, events: str,
                   repo_files: list[str]) -> None:
    """Rewrite one stage's path list in place (see _pipeline_text)."""
    had_repo = False
    for i in reversed(range(len(entries))):
        entry = entries[i]
        path = entry if isinstance(entry, str) else next(iter(entry))
        if "${" in str(path):
            continue
        new = str(path)
        if demo_events and demo_events != events:
            for folder in ("data/raw", "data/validated"):
                old = f"{folder}/{demo_events}"
                if new == old or new.startswith(old + "/"):
                    new = f"{folder}/{events}" + new[len(old):]
        if deps and (new.startswith(_GLUE_SOURCES) or new.startswith(f"{FEATURE_REPO_DIR}/")):
            had_repo = had_repo or new.startswith(f"{FEATURE_REPO_DIR}/")
            del entries[i]
            continue
        if deps and new.startswith("data/raw/") and new != f"data/raw/{events}" \
                and not new.startswith(f"data/raw/{events}/"):
            new = "data/raw"  # the demo's other raw folders (labels): the project's whole raw data
        if new != path:
            if isinstance(entry, str):
                entries[i] = new
            else:
                entry[new] = entry.pop(path)
    if deps and had_repo:
        entries.extend(repo_files)
    if deps:  # one entry per path
        seen: set[str] = set()
        for i in range(len(entries) - 1, -1, -1):
            path = entries[i] if isinstance(entries[i], str) else next(iter(entries[i]))
            if path in seen:
                del entries[i]
            seen.add(path)


def _repo_files(repo: Path, project_dir: Path) -> list[str]:
    """The Feast repo's definition files a stage that applies it depends on (relative to the project)."""
    files = sorted(p for p in repo.rglob("*.py") if "__pycache__" not in p.parts and "data" not in
                   p.relative_to(repo).parts)
    return [str(p.relative_to(project_dir)) for p in (*files, repo / "feature_store.yaml")]


def _demo_events() -> str | None:
    """The demo's events folder name (data.events of the demo's params.yaml)."""
    try:
        raw = yaml.safe_load((DEMO_PROJECT / PARAMS_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    data = raw.get("data") if isinstance(raw, dict) else None
    return data.get("events") if isinstance(data, dict) else None


def _readme(project_dir: Path, source: Path, repo: RepoDescription, specs: list[dict[str, Any]],
            columns: dict[str, dict[str, Any]], *, events: str, git: bool) -> str:
    label_sources = [v.source for v in repo.label_views
                     if v.source is not None and any(s["label"]["view"] == v.name for s in specs)]
    labels = "".join(f"\n   Labels: where label view sources read them (`{s.name}`: `{s.path}`, relative to "
                     "feature_repo/)." for s in label_sources if s.path)
    fill = ("" if specs else
            "0. Fill in `models:` in `params.yaml` (the commented template names the repo's feature services "
            "and label views).\n")
    vcs = ("" if git else "   Without git, `dvc init --no-scm` was run; for git: `git init`, then "
           "`dvc config core.no_scm false`.\n")
    return f"""# {project_dir.name}

An mlops-glue project, made by `glue init` around the Feast repo
`{source}` (Feast project `{repo.project}`), now in `feature_repo/`.

- `feature_repo/`: the Feast repo (entities, sources, views, label views, feature services);
- `params.yaml`: the models (one spec each: feature service, label, task, estimator, gate), the
  validation rules (derived from the Feast schema; add your own), the transform step, policies;
- `dvc.yaml`, `dags/`: the pipeline and the Airflow DAGs, the same for every glue project.

## Next steps

{fill}1. Put the raw event batches in `data/raw/{events}/`: one parquet (or CSV) file per day, with at least
   the columns {', '.join(f'`{c}`' for c in columns)} (see `validation:` in `params.yaml`).{labels}
2. Version them: `dvc add data/raw` (and `git add data/raw.dvc data/.gitignore`).
{vcs}3. If your feature views read tables built from the raw batches, point `features.transform` at the
   function that builds them (`feature_repo/transform.py:build_tables`).
4. `glue run`: validation gate, features (`feast apply`, materialization), training, the gate,
   promotion; the first model to pass its floors becomes champion.
5. `glue serve`: online scoring with the champion (`POST /predict` with the join keys and request fields).
6. `glue airflow ui`: the same stages as Airflow DAGs (daily monitoring, retraining).
"""


def _init_vcs(project_dir: Path, *, git: bool) -> str:
    """`dvc init` (glue run is `dvc repro`); with `git`, `git init` first when not in a git work tree."""
    inside = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=project_dir,
                            capture_output=True, text=True)
    top = Path(inside.stdout.strip()).resolve() if inside.returncode == 0 else None
    if git and top is None:
        _run(["git", "init", "-q"], project_dir, "git init")
        top = project_dir
    dvc = [sys.executable, "-m", "dvc"]
    if top is None:
        _run([*dvc, "init", "-q", "--no-scm"], project_dir, "dvc init")
    else:
        _run([*dvc, "init", "-q", *(["--subdir"] if top != project_dir else [])], project_dir, "dvc init")
        _run([*dvc, "config", "core.autostage", "true"], project_dir, "dvc config")
    _run([*dvc, "config", "core.analytics", "false"], project_dir, "dvc config")
    return "dvc (no git)" if top is None else "git + dvc"


def _run(argv: list[str], cwd: Path, what: str) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise GlueError(f"{what} failed in {cwd}: {(done.stderr or done.stdout).strip()}")


_GITIGNORE = """\
# environment
.venv/
__pycache__/
*.pyc

# embedded stores of the local profile (MLflow, Feast, Airflow, DVC remote)
.glue/

# the local Feast registry and online store
/feature_repo/data/

# generated: Evidently reports; DVC ignores its own outputs in data/ (it writes data/.gitignore)
/reports/
"""

_DVCIGNORE = """\
# Add patterns of files dvc should ignore, which could improve
# the performance. Learn more at
# https://dvc.org/doc/user-guide/dvcignore
"""
