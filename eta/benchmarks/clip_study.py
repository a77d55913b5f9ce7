"""The CLIP threshold study set: harmful images (MM-SafetyBench) against safe ones (COCO).

Layout of the data directory (defined here; the paper used 100 + 100 images)::

    <root>/unsafe/<any name>.{jpg,jpeg,png,bmp,webp}   labelled meta["unsafe"] = True
    <root>/safe/<any name>.{jpg,jpeg,png,bmp,webp}     labelled meta["unsafe"] = False

``make_clip_study_dir`` builds it from an MM-SafetyBench release and a COCO image folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from eta.benchmarks.errors import DataNotFoundError
from eta.benchmarks.example import Example
from eta.benchmarks.files import find_dir
from eta.benchmarks.registry import LoadContext, register, seeded_choice
from eta.benchmarks.safety import MMSAFETY_SCENARIOS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LABELS = ("unsafe", "safe")
# The study scores images alone; the text is only there for models that need one.
CLIP_STUDY_QUESTION = "What is shown in this image?"


def image_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def labelled_example(benchmark: str, label: str, image: Path, key: str) -> Example:
    return Example(benchmark=benchmark, id=f"{label}/{key}", question=CLIP_STUDY_QUESTION,
                   image=image, category=label, meta={"unsafe": label == "unsafe"})


@register(
    "clip-study", description="Harmful (MM-SafetyBench) vs safe (COCO) images for choosing "
    "tau_pre; labels in meta['unsafe']",
    kind="clip-study", paper_size=200, url="MM-SafetyBench images "
    "(https://github.com/isXinLiu/MM-SafetyBench) and COCO images (https://cocodataset.org); "
    "build the folder with eta.benchmarks.make_clip_study_dir",
    layout="unsafe/*.jpg and safe/*.jpg", categories=True,
)
def load_clip_study(ctx: LoadContext) -> list[Example]:
    return [labelled_example(ctx.name, label, image, image.name)
            for label in LABELS for image in image_files(find_dir(ctx.root, label))]


def make_clip_study_dir(
    mmsafetybench_root: Path, coco_images: Path, target: Path, *, per_label: int = 100,
    seed: int = 0, variant: str = "SD_TYPO",
) -> Path:
    """Copy a seeded choice of ``per_label`` MM-SafetyBench images (``variant``, all
    scenarios) and of COCO images into ``target/unsafe`` and ``target/safe``."""
    unsafe = {f"{s}_{p.name}": p for s in MMSAFETY_SCENARIOS
              for p in _images_if_dir(Path(mmsafetybench_root) / "imgs" / s / variant)}
    safe = {p.name: p for p in _images_if_dir(Path(coco_images))}
    for label, images in (("unsafe", unsafe), ("safe", safe)):
        if len(images) < per_label:
            raise DataNotFoundError(f"only {len(images)} {label} images found, {per_label} wanted")
        out = Path(target) / label
        out.mkdir(parents=True, exist_ok=True)
        for name in sorted(seeded_choice(list(images), per_label, seed)):
            shutil.copyfile(images[name], out / name)
    return Path(target)


def _images_if_dir(directory: Path) -> list[Path]:
    return image_files(directory) if directory.is_dir() else []
