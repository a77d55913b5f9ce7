"""Per-sample results in an embedded SQLite store: resumable, duplicate-free, safe for many writers.

A result's key is a hash of (model, method, method-parameter hash, benchmark, sample id, seed).
Each sample is committed as soon as it is done, in WAL mode, so a run killed at any instant loses
at most the sample in flight; a rerun skips what is stored. Changing any method parameter changes
the key, so old results are never overwritten. Judge verdicts live in their own table, keyed by
result and judge.
"""

from __future__ import annotations

import hashlib
import json
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


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ results

    def done_keys(self, run: RunKey) -> set[str]:
        rows = self._conn.execute(
            "SELECT key FROM results WHERE model=? AND method_hash=? AND benchmark=? AND seed=?",
            (run.model, run.method_hash, run.benchmark, run.seed),
        )
        return {r[0] for r in rows}

    def put(self, run: RunKey, sample_id: str, payload: dict[str, Any]) -> str:
        """Store one sample's result (committed at once; a second write of the same key is ignored)."""
        key = run.key(sample_id)
        self._conn.execute(
            "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def export_jsonl(self, path: str | Path, records: Iterable[dict[str, Any]] | None = None) -> Path:
        """Write records (default: the whole store) as JSON lines, replacing the file."""
        return write_jsonl(path, records if records is not None else self.iter_all())


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
