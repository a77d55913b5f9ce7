"""Moving bytes: resumable downloads of plain URLs, hub files through ``huggingface_hub``,
and archives unpacked member by member (re-rooted, filtered, checked, hashed)."""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm.auto import tqdm

from eta.cache import sha256_of
from eta.fetch.sources import Unpack

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
USER_AGENT = "eta-data-fetch"
RETRY_BACKOFF_S = 1.0  # doubled after every failed attempt
JUNK = ("__MACOSX/*", "*/.DS_Store", ".DS_Store")


class FetchError(RuntimeError):
    """A download or unpack that failed; the message names the URL or file at fault."""


class ChecksumMismatch(FetchError):
    """A file whose sha256 is not the one expected."""


# --------------------------------------------------------------------------------- plain URLs


def download_url(url: str, dest: Path, *, size_bytes: int | None = None, attempts: int = 5,
                 timeout_s: float = 60.0, progress: bool = True) -> str:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming with HTTP Range after a cut
    connection (and in a later run); returns the sha256 of the file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, part, timeout_s, progress)
            break
        except urllib.error.HTTPError as err:
            if err.code < 500 and err.code != 429:
                raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
            failure: Exception = err
        except (OSError, http.client.HTTPException) as err:
            failure = err
        if attempt == attempts:
            raise FetchError(f"{url}: download failed after {attempts} attempts ({failure}); "
                             f"rerun to resume from {part}") from failure
        log.warning("%s: %s; resuming (attempt %d of %d)", url, failure, attempt + 1, attempts)
        time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
    if size_bytes is not None and part.stat().st_size != size_bytes:
        got = part.stat().st_size
        part.unlink()
        raise ChecksumMismatch(f"{url}: got {got} bytes, expected {size_bytes}")
    digest = sha256_of(part)
    os.replace(part, dest)
    return digest


def _transfer(url: str, part: Path, timeout_s: float, progress: bool) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={have}-"} if have else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # asked past the end: complete already, or a stale part
            total = _range_total(err.headers.get("Content-Range", ""))
            if total != have:
                part.unlink()
                raise ConnectionError(f"stale partial download of {have} bytes discarded") from err
            return
        raise
    with response:
        if response.headers.get_content_type() == "text/html" and not part.name.endswith(".html.part"):
            raise FetchError(f"{url}: the server sent a web page instead of the file "
                             "(a quota, login or error page); try again later")
        start = 0
        if response.status == 206:
            start = _range_start(response.headers.get("Content-Range", ""))
            if start != have:
                part.unlink()
                raise ConnectionError(f"server resumed at byte {start}, not {have}; starting over")
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        written = 0
        with open(part, "ab" if start else "wb") as out, tqdm(
            total=None if expected is None else start + expected, initial=start, unit="B",
            unit_scale=True, desc=part.name[:-5], leave=False, disable=None if progress else True,
        ) as bar:
            for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(block)
                written += len(block)
                bar.update(len(block))
        if expected is not None and written < expected:
            raise ConnectionError(f"connection closed after {start + written} of {start + expected} bytes")


def _range_start(header: str) -> int:
    match = re.match(r"bytes (\d+)-", header)
    return int(match.group(1)) if match else -1


def _range_total(header: str) -> int | None:
    match = re.search(r"/(\d+)$", header)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------------------- hub


def hub_endpoint() -> str | None:
    """``$HF_ENDPOINT`` as the environment says now (the client reads it only at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def resolve_hub_revision(repo: str, revision: str):
    """The dataset's info at ``revision`` (a commit, possibly short, or a branch); a short pin or
    branch the hub does not resolve falls back to the default branch, with a warning."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=hub_endpoint())
    try:
        try:
            return api.dataset_info(repo, revision=revision, files_metadata=True)
        except RevisionNotFoundError:
            if re.fullmatch(r"[0-9a-f]{40}", revision):
                raise FetchError(f"hub dataset {repo}: pinned revision {revision} no longer exists; "
                                 "the data changed upstream (update the pin in eta/fetch/sources.py)") from None
            info = api.dataset_info(repo, files_metadata=True)
            if not (info.sha or "").startswith(revision):
                log.warning("hub dataset %s: revision %s not found; using the default branch at %s "
                            "(recorded in the lock file)", repo, revision, info.sha)
            return info
    except GatedRepoError as err:
        raise FetchError(gated_hint(repo)) from err
    except RepositoryNotFoundError as err:
        raise FetchError(f"hub dataset {repo} not found or not accessible; if it is gated or private, "
                         + gated_hint(repo)) from err


def gated_hint(repo: str) -> str:
    return (f"hub dataset {repo} is gated: accept its terms at https://huggingface.co/datasets/{repo}, "
            "then set HF_TOKEN (or run `hf auth login`) and fetch again")


def download_hub_file(repo: str, filename: str, revision: str, local_dir: Path,
                      sha256: str | None = None) -> tuple[Path, str]:
    """One file of a hub dataset at a full ``revision`` through ``hf_hub_download`` (which
    resumes ``.incomplete`` files); checked against the hub's LFS sha256 when it has one."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError

    try:
        path = Path(hf_hub_download(repo, filename, repo_type="dataset", revision=revision,
                                    local_dir=local_dir, endpoint=hub_endpoint()))
    except GatedRepoError as err:
        raise FetchError(gated_hint(repo)) from err
    digest = sha256_of(path)
    if sha256 and digest != sha256:
        path.unlink()
        raise ChecksumMismatch(f"hub dataset {repo}: {filename} at {revision} has sha256 {digest}, "
                               f"the hub lists {sha256}")
    return path, digest


# ----------------------------------------------------------------------------------- archives


def unpack(archive: Path, root: Path, spec: Unpack) -> dict[str, str]:
    """Write the members ``spec`` selects under ``root / spec.into``; returns ``{path relative
    to root: sha256}``. A damaged archive raises ``FetchError`` naming it."""
    try:
        with _members(archive) as (names, open_member):
            chosen = _select(archive, names, spec)
            files = {}
            for name, rel in chosen:
                target_rel = PurePosixPath(spec.into, rel).as_posix() if spec.into else rel
                files[target_rel] = _write_member(open_member(name), root / target_rel)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as err:
        raise FetchError(f"{archive}: damaged archive ({err})") from err
    return files


@contextmanager
def _members(archive: Path) -> Iterator[tuple[list[str], Callable[[str], IO[bytes]]]]:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield [i.filename for i in zf.infolist() if not i.is_dir()], zf.open
        return
    with tarfile.open(archive, "r:*") as tf:
        members = {m.name: m for m in tf.getmembers() if m.isfile()}
        yield list(members), lambda name: tf.extractfile(members[name])


def _select(archive: Path, names: list[str], spec: Unpack) -> list[tuple[str, str]]:
    names = [n for n in names if not any(fnmatch.fnmatch(n, junk) for junk in JUNK)]
    prefix = ""
    if spec.anchor:  # the shallowest folder of that name decides
        depths = [PurePosixPath(name).parts[:-1] for name in names]
        found = [parts[: parts.index(spec.anchor)] for parts in depths if spec.anchor in parts]
        if not found:
            raise FetchError(f"{archive}: no folder {spec.anchor!r} inside; not the expected release")
        prefix = "".join(part + "/" for part in min(found, key=len))
    chosen = []
    for name in names:
        if not name.startswith(prefix):
            continue
        rel = name[len(prefix):]
        if spec.keep and not any(fnmatch.fnmatch(rel, pattern) for pattern in spec.keep):
            continue
        if rel.startswith("/") or ".." in PurePosixPath(rel).parts:
            raise FetchError(f"{archive}: unsafe member path {name!r}")
        chosen.append((name, rel))
    if not chosen:
        raise FetchError(f"{archive}: none of its members match {', '.join(spec.keep) or 'anything'}")
    return chosen


def _write_member(source: IO[bytes], target: Path) -> str:
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with source, open(tmp, "wb") as out:
        for block in iter(lambda: source.read(CHUNK_BYTES), b""):
            out.write(block)
            digest.update(block)
    os.replace(tmp, target)
    return digest.hexdigest()


def move_into(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))
