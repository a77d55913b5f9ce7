"""The paper's benchmarks as typed examples, loaded by name.

    from eta.benchmarks import load_benchmark, load_image
    data = load_benchmark("figstep", limit=50, seed=0)  # root: $ETA_DATA_FIGSTEP or $ETA_DATA_DIR/figstep
    image = load_image(data[0])

``list_benchmarks()`` describes every registered name; the ``embedded-*`` sets and
``advbench-embedded`` need no data directory.
"""

from eta.benchmarks import clip_study, embedded, general, heldout, safety  # noqa: F401  (registers the loaders)
from eta.benchmarks.clip_study import make_clip_study_dir
from eta.benchmarks.errors import (
    BadDataError,
    BenchmarkError,
    DataNotFoundError,
    DuplicateBenchmarkError,
    UnknownBenchmarkError,
)
from eta.benchmarks.example import Example, load_image
from eta.benchmarks.registry import (
    BenchmarkData,
    BenchmarkInfo,
    LoadContext,
    Skipped,
    benchmark_names,
    env_var,
    get_info,
    list_benchmarks,
    load_benchmark,
    register,
    select_subset,
)
from eta.benchmarks.safety import ATTACK_SUFFIX, FIGSTEP_INSTRUCTION

__all__ = [
    "ATTACK_SUFFIX", "BadDataError", "BenchmarkData", "BenchmarkError", "BenchmarkInfo",
    "DataNotFoundError", "DuplicateBenchmarkError", "Example", "FIGSTEP_INSTRUCTION", "LoadContext",
    "Skipped", "UnknownBenchmarkError", "benchmark_names", "env_var", "get_info", "list_benchmarks",
    "load_benchmark", "load_image", "make_clip_study_dir", "register", "select_subset",
]
