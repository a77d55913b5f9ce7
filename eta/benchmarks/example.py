"""The typed example every benchmark yields, and lazy image loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from eta.benchmarks.errors import BadDataError
from eta.images import ImageFileError, read_rgb


@dataclass(frozen=True)
class Example:
    """One model input of a benchmark.

    ``question`` is the exact text sent to the model, fixed instructions and suffixes of
    the variant included. ``image`` is a path, read only when the caller asks for it.
    ``meta["group"]``, when present, names items that belong together (MME's two questions
    per image); seeded subsets keep a group whole.
    """

    benchmark: str
    id: str
    question: str
    image: Path | None
    category: str | None = None
    reference: str | list[str] | None = None
    choices: tuple[str, ...] | None = None
    meta: dict = field(default_factory=dict)

    def __hash__(self) -> int:  # meta is a dict; identity is (benchmark, id)
        return hash((self.benchmark, self.id))

    @property
    def group(self) -> str:
        return str(self.meta.get("group", self.id))


def load_image(example: Example) -> Image.Image:
    """Open the example's image as RGB; the error names the file and the example."""
    if example.image is None:
        raise ValueError(f"{example.benchmark}/{example.id} is text-only: it has no image")
    try:
        return read_rgb(example.image)
    except (OSError, ImageFileError) as err:
        raise BadDataError(f"{example.benchmark}/{example.id}: {err}") from None
