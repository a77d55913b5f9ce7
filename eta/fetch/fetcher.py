"""Fetching releases into a data directory: which releases the names ask for, each release's
steps run (or verified against its lock file instead), and the plan described without a byte
downloaded (``--dry-run``)."""

from __future__ import annotations

import fnmatch
import logging
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from eta.benchmarks import BenchmarkError, get_info, list_benchmarks
from eta.benchmarks.clip_study import LABELS, make_clip_study_dir
from eta.benchmarks.registry import draw, image_paths, image_problem
from eta.cache import sha256_of
from eta.fetch.lock import LOCK_NAME, Lock, StepLock
from eta.fetch.sources import RELEASES, BuiltFrom, HubFiles, ImagesOf, Release, Step, UrlFile
from eta.fetch.transfer import (
    ChecksumMismatch,
    FetchError,
    download_hub_file,
    download_url,
    move_into,
    resolve_hub_revision,
    unpack,
)

log = logging.getLogger(__name__)

STAGING = ".download"  # inside a release directory: partial downloads, removed when it is complete
IMAGE_WORKERS = 8
Notify = Callable[[str], None]


@dataclass(frozen=True)
class FetchRequest:
    """Where to write, and whether only the images of a seeded subset are wanted."""

    root: Path
    only_needed: bool = False
    limit: int | None = None  # with only_needed: the subset size a run will use (None: all)
    seed: int = 0


@dataclass
class Outcome:
    release: str
    root: Path
    fetched: list[str] = field(default_factory=list)  # step ids downloaded or built
    verified: list[str] = field(default_factory=list)  # step ids whose files matched the lock

    def summary(self) -> str:
        return (f"{self.release}: {len(self.fetched)} source(s) fetched, {len(self.verified)} verified "
                f"against {self.root / LOCK_NAME}")


# -------------------------------------------------------------------------------------- plan


def release_benchmarks(key: str) -> list[str]:
    return [info.name for info in list_benchmarks() if info.data_key == key and info.source != "embedded"]


def plan(names: Sequence[str] = (), table: Sequence[Release] = RELEASES) -> list[tuple[Release, set[str]]]:
    """The releases ``names`` (benchmarks, or release keys; none: all) need, each with the
    benchmarks asked of it, in table order; a release built from others brings them too.
    A name that is both stands for the benchmark (``vqav2`` is not ``vqav2-testdev``)."""
    by_key = {release.key: release for release in table}
    wanted: dict[str, set[str]] = {}
    known = {info.name for info in list_benchmarks()}
    if not names:
        wanted = {key: set(release_benchmarks(key)) for key in by_key}
    for name in names:
        if name in by_key and name not in known:  # a release key that is no benchmark name
            wanted.setdefault(name, set()).update(release_benchmarks(name))
            continue
        try:
            info = get_info(name)
        except BenchmarkError as err:
            raise FetchError(f"{err}; releases: {', '.join(by_key)}") from None
        if info.source == "embedded":
            raise FetchError(f"{name} is embedded in the package: it needs no download")
        if info.data_key not in by_key:
            raise FetchError(f"no source is known for {name} (release {info.data_key})")
        wanted.setdefault(info.data_key, set()).add(name)
    for key in list(wanted):
        for step in by_key[key].steps:
            if isinstance(step, BuiltFrom):
                for dep in (step.unsafe, step.safe):
                    wanted.setdefault(dep, set()).update(release_benchmarks(dep))
    return [(release, wanted[release.key]) for release in table if release.key in wanted]


def applies(step: Step, request: FetchRequest) -> bool:
    if isinstance(step, UrlFile) and step.full_only:
        return not request.only_needed
    if isinstance(step, ImagesOf):
        return step.always or request.only_needed
    return True


def pin_of(step: Step) -> str:
    if isinstance(step, (HubFiles, UrlFile)):
        return step.revision
    if isinstance(step, BuiltFrom):
        return f"per_label={step.per_label} seed={step.seed}"
    return ""


# ------------------------------------------------------------------------------------- fetch


def fetch(names: Sequence[str], request: FetchRequest, *, table: Sequence[Release] = RELEASES,
          notify: Notify = log.info) -> list[Outcome]:
    """Fetch (or verify) every release ``names`` need under ``request.root``; the licences of
    non-commercial releases and what cannot be automated are said before any download."""
    planned = plan(names, table)
    for release, _ in planned:
        if release.non_commercial:
            notify(f"{release.key}: licence {release.licence}: non-commercial use only")
        for note in release.notes:
            notify(f"{release.key}: note: {note}")
    return [fetch_release(release, benchmarks, request, notify) for release, benchmarks in planned]


def fetch_release(release: Release, benchmarks: Iterable[str], request: FetchRequest,
                  notify: Notify = log.info) -> Outcome:
    root = request.root / release.key
    root.mkdir(parents=True, exist_ok=True)
    lock = Lock.read(root, release.key)
    staging = root / STAGING
    outcome = Outcome(release.key, root)
    for step in release.steps:
        if not applies(step, request):
            continue
        if isinstance(step, ImagesOf):
            fetched = _fetch_images(step, root, set(benchmarks), request, lock, notify)
            (outcome.fetched if fetched else outcome.verified).append(step.id)
        else:
            entry = lock.steps.get(step.id)
            if entry is not None and (entry.source, entry.pin) == (step.source, pin_of(step)):
                problems = entry.bad_files(root)
                if not problems:
                    outcome.verified.append(step.id)
                    continue
                for problem in problems:
                    notify(f"{release.key}: {problem}; fetching it again")
            else:
                entry = None
            lock.steps[step.id] = _FETCHERS[type(step)](step, root, staging, entry, request, notify)
            outcome.fetched.append(step.id)
        lock.write(root)  # after every step: an interrupted fetch keeps what it finished
    lock.write(root)
    shutil.rmtree(staging, ignore_errors=True)
    if outcome.fetched:
        for name in sorted(benchmarks):
            notify(_count_line(name, root))
    notify(outcome.summary())
    return outcome


def _count_line(name: str, root: Path) -> str:
    """How many examples the loader now reads, against the paper's count (images unchecked)."""
    try:
        _, examples = draw(name, root)
    except BenchmarkError as err:
        return f"warning: {name}: the loader cannot read {root}: {err}"
    paper = get_info(name).paper_size
    if paper is None or paper == len(examples):
        return f"{name}: {len(examples)} examples" + ("" if paper is None else " (as in the paper)")
    return f"warning: {name}: {len(examples)} examples, the paper has {paper}"


def _fetch_url(step: UrlFile, root: Path, staging: Path, entry: StepLock | None, request: FetchRequest,
               notify: Notify) -> StepLock:
    download = staging / step.path
    expected = entry.sha256 if entry else None
    digest = _download_checked(step.url, download, step.size_bytes, expected, step.sha256, notify)
    if step.unpack is None:
        move_into(download, root / step.path)
        files = {step.path: digest}
    else:
        try:
            files = unpack(download, root, step.unpack)
        except FetchError as err:
            download.unlink()
            raise FetchError(f"{err}; deleted, fetch again to download it afresh") from err
        download.unlink()
    return StepLock(step.source, pin=step.revision, revision=step.revision, sha256=digest, files=files)


def _download_checked(url: str, dest: Path, size_bytes: int | None, locked: str | None,
                      reported: str | None, notify: Notify) -> str:
    """Download (or reuse a finished download in the staging folder) and compare with the
    lock's sha256 (a mismatch twice is an error) or the one reported upstream (a warning)."""
    want = locked or reported
    for attempt in (1, 2):
        digest = sha256_of(dest) if dest.is_file() else download_url(url, dest, size_bytes=size_bytes)
        if want is None or digest == want:
            return digest
        source = "the lock file" if locked else "the one reported for it"
        if attempt == 1:
            notify(f"{dest.name}: sha256 {digest} differs from {source} ({want}); downloading it again")
            dest.unlink()
    if locked:
        dest.unlink()
        raise ChecksumMismatch(f"{url}: sha256 {digest} again, the lock file records {locked}: the file "
                               f"changed upstream (remove its entry from {LOCK_NAME} to accept it)")
    notify(f"warning: {url}: sha256 {digest} differs from the one reported ({reported}); kept and "
           "recorded in the lock file")
    return digest


def _fetch_hub(step: HubFiles, root: Path, staging: Path, entry: StepLock | None, request: FetchRequest,
               notify: Notify) -> StepLock:
    info = resolve_hub_revision(step.repo, entry.revision if entry else step.revision)
    siblings = sorted((s for s in info.siblings or ()
                       if any(fnmatch.fnmatch(s.rfilename, pattern) for pattern in step.patterns)),
                      key=lambda s: s.rfilename)
    if not siblings:
        raise FetchError(f"hub dataset {step.repo} at {info.sha}: no file matches {', '.join(step.patterns)}")
    files: dict[str, str] = {}
    digest = ""
    for sibling in siblings:
        path, digest = download_hub_file(step.repo, sibling.rfilename, info.sha, staging / "hub",
                                         sibling.lfs.sha256 if sibling.lfs else None)
        locked = entry.files.get(sibling.rfilename) if entry and step.unpack is None else None
        if locked and digest != locked:
            path.unlink()
            raise ChecksumMismatch(f"hub dataset {step.repo}: {sibling.rfilename} at {info.sha} has sha256 "
                                   f"{digest}, the lock file records {locked}")
        if step.unpack is None:
            move_into(path, root / sibling.rfilename)
            files[sibling.rfilename] = digest
        else:
            files.update(unpack(path, root, step.unpack))
            path.unlink()
    single = digest if len(siblings) == 1 else ""
    return StepLock(step.source, pin=step.revision, revision=info.sha, sha256=single, files=files)


def _fetch_built(step: BuiltFrom, root: Path, staging: Path, entry: StepLock | None, request: FetchRequest,
                 notify: Notify) -> StepLock:
    for label in LABELS:
        shutil.rmtree(root / label, ignore_errors=True)
    make_clip_study_dir(request.root / step.unsafe, request.root / step.safe / step.safe_folder, root,
                        per_label=step.per_label, seed=step.seed)
    files = {path.relative_to(root).as_posix(): sha256_of(path)
             for label in LABELS for path in sorted((root / label).iterdir())}
    return StepLock(step.source, pin=pin_of(step), files=files)


_FETCHERS = {UrlFile: _fetch_url, HubFiles: _fetch_hub, BuiltFrom: _fetch_built}


def _fetch_images(step: ImagesOf, root: Path, benchmarks: set[str], request: FetchRequest, lock: Lock,
                  notify: Notify) -> bool:
    """Download the images the asked-for benchmarks' seeded subsets read and the release lacks;
    returns whether anything was downloaded."""
    for folder in step.folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    limit = request.limit if request.only_needed else None
    needed: set[str] = set()
    for name in step.benchmarks:
        if name in benchmarks:
            _, examples = draw(name, root, limit=limit, seed=request.seed)
            needed.update(path.relative_to(root).as_posix() for ex in examples for path in image_paths(ex))
    entry = lock.steps.setdefault(step.id, StepLock(step.source))
    known = {rel: digest for other in lock.steps.values() for rel, digest in other.files.items()}
    todo = []
    for rel in sorted(needed):
        path = root / rel
        if path.is_file():
            if rel not in known and image_problem(path) is None:
                entry.files[rel] = sha256_of(path)  # placed there already (an archive, by hand)
                continue
            if rel in known and sha256_of(path) == known[rel]:
                continue
            notify(f"{path}: sha256 differs from the lock file; fetching it again")
        todo.append(rel)
    if todo:
        notify(f"{root.name}: downloading {len(todo)} image(s) from {step.base_url}")
        with ThreadPoolExecutor(IMAGE_WORKERS) as pool:
            digests = pool.map(lambda r: _download_image(step.base_url + r, root / r), todo)
            for rel, digest in tqdm(zip(todo, digests), total=len(todo), desc=f"{root.name} images",
                                    unit="image", disable=None):
                entry.files[rel] = digest
    return bool(todo)


def _download_image(url: str, path: Path) -> str:
    digest = download_url(url, path, progress=False)
    problem = image_problem(path)
    if problem:
        path.unlink()
        raise FetchError(f"{url}: {problem}")
    return digest


# ----------------------------------------------------------------------------------- dry run


def describe(names: Sequence[str], request: FetchRequest | None, *, table: Sequence[Release] = RELEASES) -> str:
    """What a fetch of ``names`` would download: per release its benchmarks, sources,
    revisions, size, licence, notes, and what its lock file already holds."""
    lines = [f"data directory: {request.root if request else '(not set: pass --dir or set $ETA_DATA_DIR)'}"]
    for release, benchmarks in plan(names, table):
        target = request.root / release.key if request else Path("$ETA_DATA_DIR") / release.key
        lines.append(f"\n{release.key} -> {target}")
        lines.append(f"  benchmarks: {', '.join(sorted(benchmarks)) or '(needed by another release)'}")
        lock = Lock.read(target, release.key) if request and (target / LOCK_NAME).is_file() else Lock(release.key)
        lines.extend(f"  {line}" for line in _describe_steps(release.steps, request, lock))
        lines.append(f"  size:       {release.size}")
        lines.append(f"  licence:    {release.licence}" + ("  [NON-COMMERCIAL]" if release.non_commercial else ""))
        lines.extend(f"  note:       {note}" for note in release.notes)
        if any(isinstance(step, HubFiles) and step.gated for step in release.steps):
            lines.append("  access:     gated on the hub: accept its terms there, then set HF_TOKEN")
        if lock.steps:
            count = sum(len(step.files) for step in lock.steps.values())
            lines.append(f"  status:     fetched ({count} files locked in {target / LOCK_NAME}); "
                         "a fetch verifies them")
        else:
            lines.append("  status:     not fetched")
    return "\n".join(lines)


def _describe_steps(steps: Sequence[Step], request: FetchRequest | None, lock: Lock) -> list[str]:
    lines: list[str] = []
    groups: dict[tuple[str, str], list[UrlFile]] = {}
    for step in steps:
        if isinstance(step, UrlFile) and not step.unpack and step.revision:
            groups.setdefault((step.url.rsplit("/", 1)[0], step.revision), []).append(step)
    shown: set[tuple[str, str]] = set()
    for step in steps:
        mode = ""
        if request and not applies(step, request):
            mode = "  [skipped: " + ("--only-needed" if request.only_needed else "only with --only-needed") + "]"
        elif isinstance(step, ImagesOf) and not step.always:
            mode = "  [only with --only-needed; otherwise the archives above]"
        elif isinstance(step, UrlFile) and step.full_only:
            mode = "  [left out by --only-needed]"
        if isinstance(step, UrlFile) and (key := (step.url.rsplit("/", 1)[0], step.revision)) in groups:
            if key in shown:
                continue
            shown.add(key)
            more = len(groups[key]) - 1
            lines.append(f"source:     {step.url}" + (f" (+{more} more file(s) in that folder)" if more else ""))
        else:
            lines.append(f"source:     {step.source}{mode}")
        locked = lock.steps.get(step.id)
        resolved = locked and (locked.revision if isinstance(step, HubFiles) else locked.sha256)
        lines.append(f"revision:   {_revision_text(step)}" + (f"; locked: {resolved}" if resolved else ""))
    return lines


def _revision_text(step: Step) -> str:
    if isinstance(step, HubFiles):
        if re.fullmatch(r"[0-9a-f]{40}", step.revision):
            return step.revision
        return f"{step.revision} (not a full commit: resolved on first fetch and recorded in the lock)"
    if isinstance(step, UrlFile):
        if step.revision:
            return f"{step.revision} (commit in the URL)"
        reported = f"; sha256 reported upstream {step.sha256}" if step.sha256 else ""
        return f"none upstream: pinned by the sha256 of the first download{reported}"
    if isinstance(step, ImagesOf):
        return "none upstream: each image's sha256 is recorded when fetched"
    return f"derived: {pin_of(step)}"
