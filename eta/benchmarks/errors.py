"""Errors raised while resolving and reading benchmark data."""

from __future__ import annotations


class BenchmarkError(Exception):
    """Base class of every benchmark error."""


class UnknownBenchmarkError(BenchmarkError, LookupError):
    """No benchmark is registered under the requested name."""


class DuplicateBenchmarkError(BenchmarkError, ValueError):
    """A second loader tried to register an existing name."""


class DataNotFoundError(BenchmarkError, FileNotFoundError):
    """The data directory, or a file the release must contain, is missing."""


class BadDataError(BenchmarkError, ValueError):
    """A row, an image or a file's content cannot be turned into examples."""
