"""Weights & Biases tracking: one run per executed notebook, offline unless credentials exist.

    run = start_run("01_clip_threshold_roc", profile, params, group=None, stand_in=True,
                    model_names={"clip": "tiny-clip"})
    log_summary(run, {"embedded-clip-study/auc": 0.71})
    finish_run(run)

Conventions: project per suite (``$WANDB_PROJECT``, default ``eta-reproduction``), group per
reproduce run (``$ETA_RUN_ID``), job_type per notebook, name ``<notebook>-<profile>``, summary keys
``benchmark/metric``. The config holds the fully resolved parameters with anything that looks like a
secret removed. Inside IPython (a notebook) a cell that raises finishes the run as failed; outside,
use the ``tracked(...)`` context manager for the same guarantee.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import netrc
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from eta.config import Profile, to_dict

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "eta-reproduction"
DEFAULT_HOST = "api.wandb.ai"
SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "pwd",
                          "credential", "credentials", "auth"})
REDACTED = "<redacted>"
MIN_SECRET_CHARS = 8  # env values shorter than this are not treated as secrets to hunt for
THUMBNAIL_PX = 96
MAX_TABLE_ROWS = 500
EXECUTED_NOTEBOOK_ENV = "ETA_EXECUTED_NOTEBOOK"  # set by reproduce: where papermill writes the executed notebook

_failure_hooks: dict[int, Any] = {}  # id(run) -> IPython post_run_cell hook


# ------------------------------------------------------------------------------------ secrets


def key_words(key: str) -> list[str]:
    """``"WANDB_API_KEY"`` -> ``["wandb", "api", "key"]``; ``"hfToken"`` -> ``["hf", "token"]``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(key))
    return [w for w in re.split(r"[^0-9A-Za-z]+", spaced.lower()) if w]


def looks_secret(key: str) -> bool:
    """True when a word of the key is a secret word (``api_key``, ``hf_token``; not ``max_new_tokens``)."""
    return any(word in SECRET_WORDS for word in key_words(key))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (to scrub them wherever they appear)."""
    environ = os.environ if environ is None else environ
    return sorted({v for k, v in environ.items() if looks_secret(k) and len(v) >= MIN_SECRET_CHARS},
                  key=len, reverse=True)


def strip_secrets(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of ``obj`` without secret-looking keys; secret env values inside strings redacted."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {k: strip_secrets(v, secrets) for k, v in obj.items() if not looks_secret(str(k))}
    if isinstance(obj, (list, tuple)):
        return [strip_secrets(v, secrets) for v in obj]
    if isinstance(obj, str):
        for secret in secrets:
            obj = obj.replace(secret, REDACTED)
        return obj
    return obj


# --------------------------------------------------------------------------------------- mode


def has_credentials(environ: Mapping[str, str] | None = None) -> bool:
    """An API key in the environment, or a netrc entry for the W&B host."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(environ.get("WANDB_BASE_URL", f"https://{DEFAULT_HOST}")).hostname or DEFAULT_HOST
    path = Path(environ.get("NETRC", Path.home() / ".netrc")).expanduser()
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators(host) is not None
    except (netrc.NetrcParseError, OSError) as exc:
        log.warning("cannot read %s (%s); W&B runs stay offline", path, exc)
        return False


def resolve_mode(environ: Mapping[str, str] | None = None) -> str:
    """``$WANDB_MODE`` when set (``disabled`` honoured), else online with credentials, else offline."""
    environ = os.environ if environ is None else environ
    mode = environ.get("WANDB_MODE", "").strip().lower()
    if mode == "dryrun":
        return "offline"
    if mode:
        return mode
    return "online" if has_credentials(environ) else "offline"


# ---------------------------------------------------------------------------------------- runs


def stand_in_note(profile: Profile, model_names: Mapping[str, str]) -> str:
    models = ", ".join(f"{role}={name}" for role, name in model_names.items()) or "profile models"
    return (f"STAND-IN MODELS ({models}; profile '{profile.name}'): these are NOT the paper's models. "
            "The numbers test the pipeline and must not be read as a reproduction of the paper's results.")


def run_config(notebook: str, profile: Profile, params: Mapping[str, Any], *, group: str | None,
               stand_in: bool, model_names: Mapping[str, str]) -> dict[str, Any]:
    """The fully resolved parameters of one notebook run, secrets removed."""
    config = {"notebook": notebook, "run_id": group, "stand_in": stand_in,
              "models_used": dict(model_names), "profile": to_dict(profile), "params": dict(params)}
    config = json.loads(json.dumps(config, default=str))
    # W&B drops empty mappings from a run's config; None keeps the parameter visible.
    config["params"] = {k: (None if v == {} else v) for k, v in config["params"].items()}
    return strip_secrets(config)


def run_tags(profile: Profile, model_names: Mapping[str, str], stand_in: bool) -> list[str]:
    tags = [profile.name, *model_names.values()]
    if stand_in:
        tags.append("stand-in")
    return [t[:64] for t in dict.fromkeys(tags)]  # W&B caps a tag at 64 characters


def start_run(notebook: str, profile: Profile, params: Mapping[str, Any], *, group: str | None = None,
              stand_in: bool, model_names: Mapping[str, str] | None = None):
    """Start the W&B run of one notebook and return it (a ``wandb`` Run).

    ``model_names`` maps roles to the models this notebook uses (default: the profile's VLM).
    Project and entity come from ``params`` (``wandb_project`` / ``wandb_entity``) or the
    environment; group from ``group`` or ``$ETA_RUN_ID``; files go to ``$WANDB_DIR`` (default the
    current directory's ``wandb/``).
    """
    import wandb

    model_names = dict(model_names or {"vlm": profile.models.vlm})
    group = group or os.environ.get("ETA_RUN_ID") or None
    mode = resolve_mode()
    directory = os.environ.get("WANDB_DIR") or None
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=params.get("wandb_project") or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        entity=params.get("wandb_entity") or os.environ.get("WANDB_ENTITY") or None,
        group=group,
        job_type=notebook,
        name=f"{notebook}-{profile.name}",
        tags=run_tags(profile, model_names, stand_in),
        notes=stand_in_note(profile, model_names) if stand_in else None,
        config=run_config(notebook, profile, params, group=group, stand_in=stand_in, model_names=model_names),
        mode=mode,
        dir=directory,
        save_code=False,
        reinit="finish_previous",  # re-running the start cell in JupyterLab closes the previous run
    )
    log.info("W&B run %s (%s mode, group %s)", getattr(run, "name", notebook), mode, group)
    _install_failure_hook(run)
    return run


def finish_run(run, exit_code: int = 0) -> None:
    """Finish ``run`` (``exit_code=1`` marks it failed) and drop its notebook failure hook."""
    hook = _failure_hooks.pop(id(run), None)
    if hook is not None:
        with contextlib.suppress(Exception):
            _ipython().events.unregister("post_run_cell", hook)
    executed = os.environ.get(EXECUTED_NOTEBOOK_ENV)
    if exit_code == 0 and executed and Path(executed).is_file():
        # papermill saves the output notebook after every cell: this copy holds every output but this cell's
        log_artifact(run, executed, type="executed-notebook")
    run.finish(exit_code=exit_code)


@contextlib.contextmanager
def tracked(notebook: str, profile: Profile, params: Mapping[str, Any], *, group: str | None = None,
            stand_in: bool, model_names: Mapping[str, str] | None = None) -> Iterator[Any]:
    """``with tracked(...) as run:``; the run finishes as failed (exit code 1) if the block raises."""
    run = start_run(notebook, profile, params, group=group, stand_in=stand_in, model_names=model_names)
    try:
        yield run
    except BaseException:
        finish_run(run, exit_code=1)
        raise
    finish_run(run)


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _install_failure_hook(run) -> None:
    """In a notebook, a cell that raises finishes the run as failed (papermill stops there)."""
    shell = _ipython()
    if shell is None:
        return
    for stale in list(_failure_hooks):  # one tracked run at a time in a kernel
        with contextlib.suppress(Exception):
            shell.events.unregister("post_run_cell", _failure_hooks.pop(stale))

    def finish_on_error(result) -> None:
        if result.error_in_exec is None and result.error_before_exec is None:
            return
        log.error("a cell raised; finishing W&B run %s as failed", getattr(run, "name", ""))
        try:
            finish_run(run, exit_code=1)
        except Exception as exc:  # never mask the cell's own error
            log.warning("could not finish the W&B run: %s", exc)

    shell.events.register("post_run_cell", finish_on_error)
    _failure_hooks[id(run)] = finish_on_error


# ------------------------------------------------------------------------------------ logging


def log_summary(run, metrics: Mapping[str, Any]) -> None:
    """Write headline metrics into the run summary; keys are ``benchmark/metric``.

    Values are numbers, or objects with a ``value`` (``eta.metrics.Metric``; its stderr goes beside).
    """
    for key, value in metrics.items():
        if "/" not in key:
            raise ValueError(f"summary key {key!r} must look like 'benchmark/metric'")
        number, stderr = metric_value(value)
        run.summary[key] = float("nan") if number is None else number  # kept visible as NaN, not dropped
        if stderr is not None:
            run.summary[f"{key}_stderr"] = stderr


def metric_value(value: Any) -> tuple[float | None, float | None]:
    """(value, stderr) of a number or of a ``Metric``-like object."""
    if hasattr(value, "value"):
        return _number(value.value), _number(getattr(value, "stderr", None))
    return _number(value), None


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    return float(value)


def thumbnail(path: str | os.PathLike | None, size_px: int = THUMBNAIL_PX):
    """A small ``wandb.Image`` of an image file, or None when there is none."""
    import wandb
    from PIL import Image

    if path is None or (isinstance(path, float) and path != path) or not Path(path).is_file():
        return None
    try:
        with Image.open(path) as image:
            small = image.convert("RGB")
    except (OSError, ValueError) as exc:
        log.warning("no thumbnail for %s: %s", path, exc)
        return None
    small.thumbnail((size_px, size_px))
    return wandb.Image(small)


def log_table(run, key: str, dataframe, image_column: str | None = None,
              max_rows: int = MAX_TABLE_ROWS, thumbnail_px: int = THUMBNAIL_PX) -> None:
    """Log a DataFrame as a ``wandb.Table``; ``image_column`` paths become small thumbnails."""
    import wandb

    frame = dataframe.head(max_rows).copy()
    if len(dataframe) > max_rows:
        log.warning("table %s: logging the first %d of %d rows", key, max_rows, len(dataframe))
    if image_column is not None:
        frame[image_column] = [thumbnail(p, thumbnail_px) for p in frame[image_column]]
    for column in frame.columns:
        if column != image_column and frame[column].dtype == object:
            values = [v if v is None or isinstance(v, (str, int, float, bool)) else str(v) for v in frame[column]]
            kinds = {type(v) is str for v in values if v is not None}
            if len(kinds) > 1:  # a W&B column holds one type: mixed text and numbers become text
                values = [None if v is None else str(v) for v in values]
            frame[column] = values
    run.log({key: wandb.Table(dataframe=frame.reset_index(drop=True))})


def log_figure(run, key: str, figure) -> None:
    """Log a matplotlib figure as an image (PNG, no plotly needed)."""
    import wandb
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    buffer.seek(0)
    run.log({key: wandb.Image(Image.open(buffer).convert("RGB"))})


def artifact_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]+", "-", text).strip("-")[:128] or "artifact"


def log_artifact(run, path: str | os.PathLike, type: str, name: str | None = None) -> None:  # noqa: A002
    """Log a file or directory as an artifact of ``type`` (named ``<run name>-<file stem>``)."""
    import wandb

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artifact {path} does not exist")
    artifact = wandb.Artifact(artifact_name(name or f"{getattr(run, 'name', '') or 'run'}-{path.stem}"), type=type)
    if path.is_dir():
        artifact.add_dir(str(path))
    else:
        artifact.add_file(str(path))
    run.log_artifact(artifact)


# ---------------------------------------------------------------------------------- read back


def wandb_command() -> list[str]:
    """The ``wandb`` CLI of this environment."""
    beside = Path(sys.executable).with_name("wandb")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("wandb")
    if found:
        return [found]
    return [sys.executable, "-m", "wandb"]


def offline_runs(wandb_dir: str | os.PathLike) -> list[Path]:
    """Offline run directories under ``wandb_dir`` (its ``wandb/`` subfolder is looked into too)."""
    root = Path(wandb_dir)
    found = sorted(root.glob("offline-run-*")) + sorted(root.glob("wandb/offline-run-*"))
    return [p for p in found if p.is_dir()]


def read_offline_run(run_dir: str | os.PathLike, timeout_s: float = 60) -> dict[str, Any]:
    """Config, summary, state, tags (and the rest ``wandb leet inspect`` reports) of a local run."""
    command = [*wandb_command(), "leet", "inspect", "--summary", "--json", str(run_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    data = json.loads(done.stdout)
    for key in ("config", "summary"):
        data.setdefault(key, {})
    data.setdefault("tags", [])
    data.setdefault("state", None)
    return data
