"""Benchmark data in one command: ``python -m eta data fetch [BENCH ...]``.

    from eta.fetch import FetchRequest, describe, fetch
    print(describe(["figstep"], FetchRequest(Path("data"))))   # sources, revisions, sizes, licences
    fetch(["figstep", "vlsafe"], FetchRequest(Path("data")))    # -> data/figstep, data/vlsafe

Every release is written in the layout its loader in ``eta.benchmarks`` reads, with a lock file
recording each source, the revision it resolved to and the sha256 of every file written; a
second fetch verifies those files instead of downloading. The source table is ``sources.RELEASES``.
"""

from eta.fetch.fetcher import FetchRequest, Outcome, describe, fetch, plan
from eta.fetch.lock import LOCK_NAME, Lock
from eta.fetch.sources import RELEASES, Release
from eta.fetch.transfer import ChecksumMismatch, FetchError

__all__ = ["LOCK_NAME", "RELEASES", "ChecksumMismatch", "FetchError", "FetchRequest", "Lock", "Outcome",
           "Release", "describe", "fetch", "plan"]
