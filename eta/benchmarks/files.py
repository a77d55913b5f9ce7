"""Reading release files: locating them, parsing rows, and images stored inside tables."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from eta.benchmarks.errors import BadDataError, DataNotFoundError
from eta.cache import cache_dir


class BadRow(ValueError):
    """A row that cannot become an example; the message says why."""


def find_file(root: Path, *candidates: str) -> Path:
    """The first of ``candidates`` (paths relative to ``root``) that is a file."""
    for candidate in candidates:
        if (root / candidate).is_file():
            return root / candidate
    raise DataNotFoundError(f"{root}: missing file; looked for {', '.join(candidates)}")


def find_dir(root: Path, *candidates: str) -> Path:
    """The first of ``candidates`` (paths relative to ``root``) that is a directory."""
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    raise DataNotFoundError(f"{root}: missing directory; looked for {', '.join(candidates)}")


def find_files(root: Path, *patterns: str) -> list[Path]:
    """The sorted matches of the first glob pattern that matches anything."""
    for pattern in patterns:
        matches = sorted(path for path in root.glob(pattern) if path.is_file())
        if matches:
            return matches
    raise DataNotFoundError(f"{root}: no files matching any of {', '.join(patterns)}")


def read_text(path: Path, kind: str = "text") -> str:
    """A release file's UTF-8 text; a directory, a missing file or other bytes are one error naming it."""
    if path.is_dir():
        raise BadDataError(f"{path}: is a directory, expected a {kind} file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: {kind} file not found") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadDataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); "
                           f"convert the {kind} file to UTF-8") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path, "JSON"))
    except json.JSONDecodeError as err:
        raise BadDataError(f"{path}: invalid JSON: {err}") from err


def json_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of the non-blank lines of a JSON-lines file."""
    for number, line in enumerate(io.StringIO(read_text(path, "JSON-lines")), 1):
        if line.strip():
            yield number, line


def json_object(line: str) -> dict:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise BadRow(f"invalid JSON: {err}") from err
    if not isinstance(value, dict):
        raise BadRow(f"expected a JSON object, got {type(value).__name__}")
    return value


def read_csv(path: Path, required: Sequence[str]) -> list[tuple[int, dict]]:
    """``(row number, row)`` pairs, rows numbered from 1 after the header.

    A column missing from the header fails the whole file."""
    reader = csv.DictReader(io.StringIO(read_text(path, "CSV"), newline=""))
    require_columns(path, reader.fieldnames or [], required)
    return list(enumerate(reader, 1))


def require_columns(path: Path, columns: Iterable[str], required: Sequence[str]) -> None:
    columns = list(columns)
    missing = [name for name in required if name not in columns]
    if missing:
        found = ", ".join(map(str, columns))
        raise BadDataError(f"{path}: missing column(s) {', '.join(missing)}; found {found}")


def read_table(path: Path, required: Sequence[str] = ()) -> list[dict]:
    """Rows of a parquet file or of a ``datasets`` arrow export (``*.arrow``) as dicts."""
    try:
        import pyarrow.parquet as pq
        from pyarrow import ipc
    except ImportError as err:
        raise ImportError(f"reading {path} needs pyarrow (pip install pyarrow)") from err
    try:
        if path.suffix == ".arrow":
            with open(path, "rb") as handle:
                table = ipc.open_stream(handle).read_all()
        else:
            table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise BadDataError(f"{path}: cannot read table: {err}") from err
    require_columns(path, table.column_names, required)
    return table.to_pylist()


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip()
    )


def text(row: dict, key: str) -> str:
    """The non-blank string in ``row[key]``, verbatim."""
    value = row.get(key)
    if is_missing(value):
        raise BadRow(f"missing or empty {key!r}")
    return str(value)


def optional_text(row: dict, key: str) -> str | None:
    value = row.get(key)
    return None if is_missing(value) else str(value)


def image_bytes(cell: Any, key: str = "image") -> bytes:
    """Bytes of an image cell as ``datasets`` stores it (``{"bytes": ..., "path": ...}``)."""
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    if isinstance(cell, (bytes, bytearray)) and cell:
        return bytes(cell)
    raise BadRow(f"{key!r} holds no image bytes")


_SIGNATURES = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


def image_suffix(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    for signature, suffix in _SIGNATURES:
        if data.startswith(signature):
            return suffix
    return ".img"


def file_digest(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class ImageStore:
    """Images stored inside a release's tables, written to the cache only when used.

    ``add`` returns the path an image will have; ``write`` creates the files of the paths
    asked for (once: the directory is keyed by the source file's content hash).
    """

    def __init__(self) -> None:
        self._pending: dict[Path, bytes] = {}
        self._dirs: dict[Path, Path] = {}

    def directory(self, benchmark: str, source: Path) -> Path:
        if source not in self._dirs:
            self._dirs[source] = cache_dir() / "benchmarks" / "images" / benchmark / file_digest(source)
        return self._dirs[source]

    def add(self, directory: Path, key: str, data: bytes) -> Path:
        path = directory / (re.sub(r"[^0-9A-Za-z._-]+", "_", key) + image_suffix(data))
        self._pending[path] = data
        return path

    def write(self, paths: Iterable[Path]) -> None:
        for path in paths:
            data = self._pending.get(path)
            if data is None or path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
