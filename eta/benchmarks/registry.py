"""Benchmarks by name: registration, data-directory resolution, seeded subsets, loading.

A loader is a function ``loader(ctx: LoadContext) -> Iterable[Example]`` registered with
``@register(name, ...)``. ``load_benchmark`` resolves the data directory, runs the loader,
takes the seeded subset, and only then checks (and, for images stored inside tables,
writes) the images of the examples it returns.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from eta.benchmarks.errors import (
    BadDataError,
    DataNotFoundError,
    DuplicateBenchmarkError,
    UnknownBenchmarkError,
)
from eta.benchmarks.example import Example
from eta.benchmarks.files import BadRow, ImageStore

log = logging.getLogger(__name__)

KINDS = ("harmful", "helpful", "general", "clip-study")
SOURCES = ("local-dir", "embedded")


@dataclass(frozen=True)
class BenchmarkInfo:
    """What a registered benchmark is and where its data comes from."""

    name: str
    description: str
    kind: str
    source: str
    paper_size: int | None = None
    data_key: str = ""  # the release it reads; variants of one release share it
    url: str = ""
    layout: str = ""
    has_categories: bool = False
    sample_size: int | None = None  # the paper's sample (VLSafe: 100), drawn with seed 0

    @property
    def env_vars(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(env_var(key) for key in (self.name, self.data_key)))


@dataclass(frozen=True)
class Skipped:
    """An item left out by ``skip_bad=True``: where it was and why."""

    where: str
    reason: str


@dataclass(frozen=True)
class BenchmarkData(Sequence):
    """The examples of one load, in release order, plus what was skipped and why."""

    info: BenchmarkInfo
    examples: tuple[Example, ...]
    skipped: tuple[Skipped, ...] = ()
    root: Path | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index):
        return self.examples[index]

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)


Loader = Callable[["LoadContext"], Iterable[Example]]

_LOADERS: dict[str, Loader] = {}
_INFOS: dict[str, BenchmarkInfo] = {}


def register(
    name: str,
    *,
    description: str,
    kind: str,
    source: str = "local-dir",
    paper_size: int | None = None,
    data_key: str | None = None,
    url: str = "",
    layout: str = "",
    categories: bool = False,
    sample_size: int | None = None,
) -> Callable[[Loader], Loader]:
    """Register ``loader`` under ``name``; a name can be registered once."""
    if kind not in KINDS:
        raise ValueError(f"benchmark {name!r}: kind must be one of {KINDS}, got {kind!r}")
    if source not in SOURCES:
        raise ValueError(f"benchmark {name!r}: source must be one of {SOURCES}, got {source!r}")
    info = BenchmarkInfo(
        name=name, description=description, kind=kind, source=source,
        paper_size=paper_size, data_key=data_key or name, url=url, layout=layout,
        has_categories=categories, sample_size=sample_size,
    )

    def decorate(loader: Loader) -> Loader:
        if name in _LOADERS:
            raise DuplicateBenchmarkError(f"benchmark {name!r} is already registered")
        _LOADERS[name] = loader
        _INFOS[name] = info
        return loader

    return decorate


def benchmark_names() -> list[str]:
    return sorted(_INFOS)


def list_benchmarks() -> list[BenchmarkInfo]:
    return [_INFOS[name] for name in benchmark_names()]


def get_info(name: str) -> BenchmarkInfo:
    try:
        return _INFOS[name]
    except KeyError:
        known = ", ".join(benchmark_names())
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; known benchmarks: {known}") from None


def env_var(name: str) -> str:
    """``mmsafetybench-sd_typo`` -> ``ETA_DATA_MMSAFETYBENCH_SD_TYPO``."""
    return "ETA_DATA_" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").upper()


def resolve_root(info: BenchmarkInfo, root: str | os.PathLike | None = None) -> Path | None:
    """The data directory: ``root``, else ``$ETA_DATA_<NAME>`` (or of its release),
    else ``$ETA_DATA_DIR/<name>`` (or ``/<release>``)."""
    if info.source == "embedded":
        if root is not None:
            raise ValueError(f"{info.name} is embedded and reads no data directory; pass root=None")
        return None
    if root is not None:
        return _existing_dir(Path(root).expanduser(), f"{info.name}: root")
    for var in info.env_vars:
        if os.environ.get(var):
            return _existing_dir(Path(os.environ[var]).expanduser(), f"{info.name}: ${var}")
    tried = []
    if os.environ.get("ETA_DATA_DIR"):
        base = Path(os.environ["ETA_DATA_DIR"]).expanduser()
        for key in dict.fromkeys((info.name, info.data_key)):
            if (base / key).is_dir():
                return base / key
            tried.append(str(base / key))
    raise DataNotFoundError(_missing_root_message(info, tried))


def _existing_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataNotFoundError(f"{what} {path} is not a directory")
    return path


def _missing_root_message(info: BenchmarkInfo, tried: list[str]) -> str:
    lines = [
        f"no data directory for benchmark {info.name!r}.",
        f"Set {' or '.join('$' + var for var in info.env_vars)} to it, pass root=..., "
        f"or place it at $ETA_DATA_DIR/{info.data_key}"
        + (f" (tried {', '.join(tried)})" if tried else " ($ETA_DATA_DIR is not set)") + ".",
    ]
    if info.layout:
        lines.append(f"Expected layout: {info.layout}")
    if info.url:
        lines.append(f"The data comes from: {info.url}")
    return "\n".join(lines)


def seeded_choice(keys: Sequence[str], k: int, seed: int) -> set[str]:
    """``k`` of ``keys`` chosen by a seeded hash: the same on every run and Python version,
    and a key's fate does not depend on which other keys exist."""
    ranked = sorted(keys, key=lambda key: hashlib.sha256(f"{seed}\0{key}".encode()).digest())
    return set(ranked[:k])


def select_subset(examples: Sequence[Example], limit: int | None, seed: int = 0) -> list[Example]:
    """A seeded subset of ``limit`` groups (an example is its own group by default),
    in the original order; ``None`` keeps everything."""
    if limit is None:
        return list(examples)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    groups = list(dict.fromkeys(example.group for example in examples))
    if limit >= len(groups):
        return list(examples)
    chosen = seeded_choice(groups, limit, seed)
    return [example for example in examples if example.group in chosen]


@dataclass
class LoadContext:
    """What a loader gets: the data root, and a way to reject bad rows."""

    name: str
    root: Path | None
    skip_bad: bool = False
    skipped: list[Skipped] = field(default_factory=list)
    images: ImageStore = field(default_factory=ImageStore)

    def reject(self, where: str, reason: str) -> None:
        """Raise for a bad item, or record and log it when ``skip_bad`` is set."""
        if not self.skip_bad:
            raise BadDataError(f"{self.name}: {where}: {reason}")
        log.warning("%s: skipping %s: %s", self.name, where, reason)
        self.skipped.append(Skipped(where, reason))

    def rows(
        self,
        source: Path,
        rows: Iterable[tuple[Any, Any]],
        make: Callable[[Any, Any], Example],
        unit: str = "row",
    ) -> Iterator[Example]:
        """``make(key, row)`` for every ``(key, row)``; a ``BadRow`` it raises is rejected
        as ``<source>: <unit> <key>``."""
        for key, row in rows:
            try:
                example = make(key, row)
            except BadRow as err:
                self.reject(f"{source}: {unit} {key}", str(err))
                continue
            yield example


def load_benchmark(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> BenchmarkData:
    """Load a registered benchmark from its release directory (or its embedded source).

    ``root`` defaults to ``$ETA_DATA_<NAME>``, then ``$ETA_DATA_DIR/<name>`` (see
    ``resolve_root``). ``limit`` takes a seeded subset of that many items (groups kept
    whole), order preserved. Bad rows and unreadable images raise ``BadDataError`` naming
    the file and row or id; with ``skip_bad=True`` they are left out, logged and listed in
    ``.skipped``. Images are checked after the subset is drawn, so a bad image shrinks the
    subset instead of changing it.
    """
    info = get_info(name)
    ctx, examples = draw(name, root, limit=limit, seed=seed, skip_bad=skip_bad)
    ctx.images.write(path for example in examples for path in image_paths(example))
    examples = _with_readable_images(ctx, examples)
    log.info("%s: %d examples (%d skipped) from %s", name, len(examples), len(ctx.skipped),
             ctx.root or "embedded source")
    return BenchmarkData(info, tuple(examples), tuple(ctx.skipped), ctx.root)


def draw(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> tuple[LoadContext, list[Example]]:
    """The examples ``load_benchmark`` would return, before their images are checked or
    written: what a run of ``limit`` and ``seed`` will read (images need not exist yet)."""
    info = get_info(name)
    ctx = LoadContext(name=name, root=resolve_root(info, root), skip_bad=skip_bad)
    examples = _unique(ctx, _LOADERS[name](ctx))
    if info.sample_size is not None:
        examples = select_subset(examples, info.sample_size, seed=0)
    return ctx, select_subset(examples, limit, seed)


def _unique(ctx: LoadContext, examples: Iterable[Example]) -> list[Example]:
    seen: set[str] = set()
    kept = []
    for example in examples:
        if example.id in seen:
            ctx.reject(f"example {example.id}", "duplicate id")
            continue
        seen.add(example.id)
        kept.append(example)
    return kept


def image_paths(example: Example) -> list[Path]:
    """The example's image, then any further images it lists in ``meta["images"]``."""
    paths = [example.image] if example.image is not None else []
    return list(dict.fromkeys(paths + [Path(p) for p in example.meta.get("images", ())]))


def _with_readable_images(ctx: LoadContext, examples: list[Example]) -> list[Example]:
    problems: dict[Path, str | None] = {}
    kept = []
    for example in examples:
        for path in image_paths(example):
            if path not in problems:
                problems[path] = image_problem(path)
            if problems[path]:
                ctx.reject(f"{path} (example {example.id})", problems[path])
                break
        else:
            kept.append(example)
    return kept


def image_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable image, or ``None`` if it is (header check only)."""
    if not path.is_file():
        return "image file is missing"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as err:  # PIL raises many types for corrupt files
        return f"unreadable image ({type(err).__name__}: {err})"
    return None
