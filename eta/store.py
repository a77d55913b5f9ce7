"""Per-sample results in an embedded SQLite store: resumable, duplicate-free, safe for many writers.

A result's key is a hash of (model, method, method-parameter hash, benchmark, sample id, seed).
The engine decodes samples in batches (``engine.batch_size``) and commits every sample of a batch,
in WAL mode, the moment the batch ends: a run killed at any instant loses at most the batch in
flight, never a committed sample; a rerun skips what is stored. Changing any method parameter
changes the key, so old results are never overwritten. Judge verdicts live in their own table,
keyed by result and judge.

Opening a store checks it before anything is written: a path that is a directory, a file that is
not SQLite, a damaged or read-only store raise :class:`StoreError` naming the file and what is
wrong. Several processes may create the same new store at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    method_hash TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    seed INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS results_run ON results (model, method_hash, benchmark, seed);
CREATE TABLE IF NOT EXISTS verdicts (
    result_key TEXT NOT NULL,
    judge TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (result_key, judge)
);
"""


def stable_hash(obj: Any) -> str:
    """A short hash of a JSON-serialisable object (keys sorted), stable across runs."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunKey:
    """What identifies one sample's result."""

    model: str
    method: str
    method_hash: str
    benchmark: str
    seed: int

    def key(self, sample_id: str) -> str:
        return stable_hash([self.model, self.method, self.method_hash, self.benchmark, sample_id, self.seed])


SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's companions of a database file
OPEN_TIMEOUT_S = 60.0


class StoreError(RuntimeError):
    """A results store cannot be used as it is; the message names the file and says what to do."""

    def __init__(self, path: Path, problem: str):
        super().__init__(
            f"{path}: {problem}; nothing was changed. To start a new store, pass --store with a new file "
            f"(or set engine.store), or move this file away.")
        self.path = path


def check_store(path: str | Path) -> None:
    """Raise :class:`StoreError` when ``path`` cannot serve as a store; never writes anything.

    A missing file is fine when its folder can be written (a new store is created there).
    """
    path = Path(path)
    if str(path) == ":memory:":
        return
    if path.is_dir():
        raise StoreError(path, "is a directory, not a results store")
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(path, f"the folder {folder} is read-only (the store writes its journal beside it)")
    if not path.exists() or path.stat().st_size == 0:
        return
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(path, "the file is read-only or unreadable (check its permissions)")
    with open(path, "rb") as handle:
        head = handle.read(len(SQLITE_HEADER))
    if head != SQLITE_HEADER:
        raise StoreError(path, f"is not an SQLite results store (it starts with {head[:12]!r})")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=OPEN_TIMEOUT_S)
        try:
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if _busy(exc):  # another process holds it for now: busy, not damaged; opening will wait
            return
        raise StoreError(path, f"is damaged (sqlite: {exc})") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(path, f"is damaged (sqlite: {exc})") from None
    if problems != ["ok"]:
        raise StoreError(path, f"is damaged (sqlite quick_check: {'; '.join(problems[:3])})")


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        check_store(self.path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=OPEN_TIMEOUT_S, isolation_level=None)
        try:
            self._setup()
        except BaseException:
            self._conn.close()
            raise

    def _setup(self) -> None:
        """WAL mode and the schema. Two processes creating one new store can deadlock on the
        journal-mode switch, and SQLite then answers "locked" at once instead of waiting:
        those attempts are retried, with jitter, for up to ``OPEN_TIMEOUT_S``."""
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        while True:
            try:
                self._conn.execute(f"PRAGMA busy_timeout={int(OPEN_TIMEOUT_S * 1000)}")
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise StoreError(self.path, f"cannot be opened (sqlite: {exc})") from None
                time.sleep(random.uniform(0.01, 0.1))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ results

    def done_keys(self, run: RunKey, with_skipped: bool = False) -> set[str]:
        """Keys of the run's stored results; a sample recorded as skipped (a payload with a
        ``skipped`` reason) counts only ``with_skipped``, so a later run tries it again."""
        rows = self._conn.execute(
            "SELECT key FROM results WHERE model=? AND method_hash=? AND benchmark=? AND seed=?"
            + ("" if with_skipped else " AND json_extract(payload, '$.skipped') IS NULL"),
            (run.model, run.method_hash, run.benchmark, run.seed),
        )
        return {r[0] for r in rows}

    def put(self, run: RunKey, sample_id: str, payload: dict[str, Any]) -> str:
        """Store one sample's result (committed at once). A second write of the same key is
        ignored, unless the stored one records a skipped sample: then it is replaced."""
        key = run.key(sample_id)
        self._conn.execute(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "payload=excluded.payload, created=excluded.created "
            "WHERE json_extract(results.payload, '$.skipped') IS NOT NULL",
            (key, run.model, run.method, run.method_hash, run.benchmark, sample_id, run.seed,
             json.dumps(payload, default=str), time.time()),
        )
        return key

    def get(self, run: RunKey, sample_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Results of ``sample_ids`` in that order (missing ones skipped), with their verdicts."""
        out = []
        for sample_id in sample_ids:
            key = run.key(sample_id)
            row = self._conn.execute("SELECT payload FROM results WHERE key=?", (key,)).fetchone()
            if row is None:
                continue
            record = json.loads(row[0])
            record.update(key=key, sample_id=sample_id, model=run.model, method=run.method,
                          method_hash=run.method_hash, benchmark=run.benchmark, seed=run.seed)
            record["verdicts"] = self.verdicts(key)
            out.append(record)
        return out

    # ----------------------------------------------------------------------------------- verdicts

    def put_verdict(self, result_key: str, judge: str, payload: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)",
            (result_key, judge, json.dumps(payload, default=str), time.time()),
        )

    def verdicts(self, result_key: str) -> dict[str, dict[str, Any]]:
        rows = self._conn.execute("SELECT judge, payload FROM verdicts WHERE result_key=?", (result_key,))
        return {judge: json.loads(payload) for judge, payload in rows}

    # ------------------------------------------------------------------------------------ exports

    def iter_all(self) -> Iterator[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT key, model, method, method_hash, benchmark, sample_id, seed, payload FROM results ORDER BY created"
        )
        for key, model, method, method_hash, benchmark, sample_id, seed, payload in rows.fetchall():
            record = json.loads(payload)
            record.update(key=key, model=model, method=method, method_hash=method_hash, benchmark=benchmark,
                          sample_id=sample_id, seed=seed, verdicts=self.verdicts(key))
            yield record

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def export_jsonl(self, path: str | Path, records: Iterable[dict[str, Any]] | None = None,
                     overwrite: bool = False) -> Path:
        """Write records (default: the whole store) as JSON lines. The store itself (or its side
        files) is never a target; an existing file that is not an earlier export is replaced only
        with ``overwrite``."""
        check_export_path(path, self.path, overwrite=overwrite)
        return write_jsonl(path, records if records is not None else self.iter_all())


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def is_export(path: Path) -> bool:
    """Whether ``path`` is empty or holds JSON lines of stored records (an earlier export)."""
    if path.stat().st_size == 0:
        return True
    with open(path, "rb") as handle:
        first = handle.readline(1 << 20)
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and {"key", "sample_id"} <= record.keys()


def check_export_path(path: str | Path, store_path: str | Path, overwrite: bool = False) -> None:
    """Refuse to write an export onto the store or its side files, onto a directory, or over an
    existing file that is not an earlier export (unless ``overwrite``)."""
    path, store_path = Path(path), Path(store_path)
    targets = [Path(str(store_path) + suffix) for suffix in ("", *SIDE_FILES)]
    if any(path.resolve() == t.resolve() or _same_file(path, t) for t in targets):
        raise ValueError(f"export path {path} is the results store {store_path} (or one of its files); "
                         f"choose another file")
    if path.is_dir():
        raise ValueError(f"export path {path} is a directory; give a file name such as {path / 'records.jsonl'}")
    if path.exists() and not overwrite and not is_export(path):
        raise ValueError(f"export path {path} exists and is not an earlier export; "
                         f"pass --overwrite to replace it, or choose another file")


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Records as JSON lines, written to a temporary file and moved into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as handle:
        for record in records:
            handle.write(json.dumps(record, default=str) + "\n")
    tmp.replace(path)
    return path


def to_dataframe(records: list[dict[str, Any]]):
    """A flat pandas frame of records (nested verdicts become ``verdict/<judge>/<field>`` columns)."""
    import pandas as pd

    rows = []
    for record in records:
        row = {k: v for k, v in record.items() if k not in ("verdicts", "timings")}
        for name, value in (record.get("timings") or {}).items():
            row[f"time/{name}"] = value
        for judge, verdict in (record.get("verdicts") or {}).items():
            for field, value in verdict.items():
                row[f"verdict/{judge}/{field}"] = value
        rows.append(row)
    return pd.DataFrame(rows)
