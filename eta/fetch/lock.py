"""The lock file of a fetched release: per step, its source, the revision it resolved to, the
sha256 of what was downloaded and of every file written (``<release dir>/eta-data.lock.json``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from eta.cache import sha256_of

LOCK_NAME = "eta-data.lock.json"
LOCK_VERSION = 1


@dataclass
class StepLock:
    source: str
    pin: str = ""  # the revision the source table asked for
    revision: str = ""  # what it resolved to
    sha256: str = ""  # of the download itself (an archive, a single file); "" for many files
    files: dict[str, str] = field(default_factory=dict)  # path in the release dir -> sha256

    def bad_files(self, root: Path) -> list[str]:
        """The recorded files that are missing or whose content changed, each with why."""
        bad = []
        files = sorted(self.files.items())
        for rel, digest in tqdm(files, desc=f"verifying {root.name}", unit="file", leave=False,
                                disable=None if len(files) > 100 else True):
            path = root / rel
            if not path.is_file():
                bad.append(f"{path}: missing")
            elif sha256_of(path) != digest:
                bad.append(f"{path}: sha256 differs from the lock")
        return bad


@dataclass
class Lock:
    release: str
    steps: dict[str, StepLock] = field(default_factory=dict)

    @classmethod
    def read(cls, root: Path, release: str) -> "Lock":
        path = root / LOCK_NAME
        if not path.is_file():
            return cls(release)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            steps = {key: StepLock(**value) for key, value in data["steps"].items()}
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: unreadable lock file ({err}); delete it to fetch afresh") from err
        return cls(data.get("release", release), steps)

    def write(self, root: Path) -> Path:
        path = root / LOCK_NAME
        payload = {"version": LOCK_VERSION, "release": self.release,
                   "steps": {key: vars(step) for key, step in sorted(self.steps.items())}}
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path
