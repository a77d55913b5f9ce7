"""Where every benchmark release comes from: the one table ``python -m eta data fetch`` reads.

A ``Release`` is one data directory (``$ETA_DATA_DIR/<key>``, the registry's ``data_key``) and the
steps that fill it in the layout its loader reads:

- ``HubFiles``: files of a Hugging Face dataset repository at a revision (``huggingface_hub``);
- ``UrlFile``: one file from a plain URL (GitHub raw, S3, ...), resumable;
- ``ImagesOf``: the images a benchmark's seeded subset reads, one GET each (COCO per-image URLs);
- ``BuiltFrom``: a directory built from other releases (the CLIP study set).

``Unpack`` turns a downloaded archive into files. Revisions and checksums here are leads gathered
from public material: a revision that cannot be resolved as given falls back to the repository's
default branch, and whatever a fetch resolves is recorded in the release's lock file.
"""

from __future__ import annotations

from dataclasses import dataclass

from eta.benchmarks.safety import MMSAFETY_SCENARIOS

COCO_IMAGES = "http://images.cocodataset.org/"


@dataclass(frozen=True)
class Unpack:
    """How to unpack an archive: re-root it at the parent of the shallowest folder named ``anchor``
    (``None``: as it is), keep the members matching ``keep`` (all if empty), under ``into``."""

    anchor: str | None = None
    keep: tuple[str, ...] = ()
    into: str = ""


@dataclass(frozen=True)
class HubFiles:
    repo: str
    revision: str  # a full commit hash, a short one or a branch; the resolved hash is locked
    patterns: tuple[str, ...]  # repository paths (globs), written at the same relative paths
    unpack: Unpack | None = None
    gated: bool = False

    @property
    def id(self) -> str:
        return f"hub:{self.repo}"

    @property
    def source(self) -> str:
        return f"https://huggingface.co/datasets/{self.repo} ({', '.join(self.patterns)})"


@dataclass(frozen=True)
class UrlFile:
    url: str
    path: str  # where the file lands in the release directory (an archive: its download name)
    sha256: str | None = None  # as reported by others: checked, and a mismatch is reported
    size_bytes: int | None = None
    unpack: Unpack | None = None
    full_only: bool = False  # left out by --only-needed: ImagesOf brings the images used
    revision: str = ""  # the commit inside the URL, where there is one

    @property
    def id(self) -> str:
        return f"url:{self.url}"

    @property
    def source(self) -> str:
        return self.url


@dataclass(frozen=True)
class ImagesOf:
    """The images the named benchmarks read (their seeded subset), each from ``base_url`` +
    the image's path inside the release directory; ``always``: also without --only-needed."""

    benchmarks: tuple[str, ...]
    base_url: str
    folders: tuple[str, ...]  # created first: the loaders look for them
    always: bool = False

    @property
    def id(self) -> str:
        return f"images:{'+'.join(self.benchmarks)}"

    @property
    def source(self) -> str:
        return f"{self.base_url}<{'|'.join(self.folders)}>/<file> (the images the seeded subset reads)"


@dataclass(frozen=True)
class BuiltFrom:
    """The CLIP study folder: ``per_label`` unsafe images of ``unsafe`` (MM-SafetyBench, one
    variant) and safe photos of ``safe`` (the COCO images of the VLSafe sample)."""

    unsafe: str
    safe: str
    safe_folder: str = "train2017"
    per_label: int = 100
    seed: int = 0

    @property
    def id(self) -> str:
        return f"built:{self.unsafe}+{self.safe}"

    @property
    def source(self) -> str:
        return (f"built by eta.benchmarks.make_clip_study_dir from {self.unsafe} (SD_TYPO images) and "
                f"{self.safe} (its COCO train2017 sample), {self.per_label} of each, seed {self.seed}")


Step = HubFiles | UrlFile | ImagesOf | BuiltFrom


@dataclass(frozen=True)
class Release:
    key: str
    steps: tuple[Step, ...]
    size: str
    licence: str
    non_commercial: bool = False
    notes: tuple[str, ...] = ()


def _github_raw(repo: str, commit: str, path: str, target: str | None = None, **kw) -> UrlFile:
    return UrlFile(f"https://raw.githubusercontent.com/{repo}/{commit}/{path}", target or path,
                   revision=commit, **kw)


MMSAFETY_COMMIT = "b80eedea3db312c09ded2082813390f68e750ef3"
FIGSTEP_COMMIT = "0861b17b3d67887c06ee3534ec65b3012f9becb7"
QI_REPO = "Unispac/Visual-Adversarial-Examples-Jailbreak-Large-Language-Models"
QI_COMMIT = "5fc9883cfa9b4183cf05c6eceef49e449e45e9c9"
ADVBENCH_COMMIT = "098262edf85f807224e70ecd87b9d83716bf6b73"
SCIENCEQA_COMMIT = "2cbf8318e07b9ece895bb2ae605e71e38d623264"
TEXTVQA = "https://dl.fbaipublicfiles.com/textvqa/"
VQA = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/"
MMSAFETY_IMAGES_DRIVE_ID = "1xjW9k-aGkmwycqGCXbru70FaSKhSDcR_"

RELEASES: tuple[Release, ...] = (
    Release(
        "spa-vl",
        (HubFiles("sqrti/SPA-VL", "0e75b34a9e803a236873420c8680de3889befd62",
                  ("test/harm-*.parquet", "test/help-*.parquet")),),
        size="≈19 MB", licence="CC BY 4.0",
    ),
    Release(
        "mmsafetybench",
        tuple(_github_raw("isXinLiu/MM-SafetyBench", MMSAFETY_COMMIT, f"data/processed_questions/{s}.json",
                          f"processed_questions/{s}.json") for s in MMSAFETY_SCENARIOS)
        + (UrlFile("https://drive.usercontent.google.com/download?id=" + MMSAFETY_IMAGES_DRIVE_ID
                   + "&export=download&confirm=t", "MM-SafetyBench(imgs).zip",
                   unpack=Unpack(anchor=MMSAFETY_SCENARIOS[0], into="imgs")),),
        size="<1 MB questions + ≈0.5 GB image zip (estimate)", licence="CC BY-NC 4.0", non_commercial=True,
        notes=("The images are a single Google Drive file with no revision: the first fetch pins it by "
               "sha256. Drive may answer with a quota page instead of the zip; rerun later (the download "
               "resumes). Mirror: hub dataset PKU-Alignment/MM-SafetyBench (parquet, needs conversion).",),
    ),
    Release(
        "figstep",
        (UrlFile(f"https://codeload.github.com/ThuCCSLab/FigStep/tar.gz/{FIGSTEP_COMMIT}",
                 f"FigStep-{FIGSTEP_COMMIT[:7]}.tar.gz", revision=FIGSTEP_COMMIT,
                 unpack=Unpack(anchor="data", keep=("data/question/safebench.csv",
                                                    "data/images/SafeBench/*"))),),
        size="≈25 MB archive (≈21 MB of images kept)", licence="MIT",
    ),
    Release(
        "cross-modality-attack",
        (_github_raw(QI_REPO, QI_COMMIT, "harmful_corpus/manual_harmful_instructions.csv"),
         _github_raw(QI_REPO, QI_COMMIT, "adversarial_images/prompt_unconstrained.bmp", size_bytes=150582),
         _github_raw(QI_REPO, QI_COMMIT, "adversarial_images/prompt_constrained_64.bmp", size_bytes=150582)),
        size="≈0.3 MB", licence="no licence file upstream: fetched from the authors' repository, not re-hosted",
    ),
    Release(
        "advbench",
        (_github_raw("llm-attacks/llm-attacks", ADVBENCH_COMMIT, "data/advbench/harmful_behaviors.csv",
                     "harmful_behaviors.csv",
                     sha256="6cd1a5c63c07610d7eb67307772ee5606017ee950b5770ab288a2c487489d3e1"),),
        size="≈82 KB", licence="MIT",
    ),
    Release(
        "vlsafe",
        (HubFiles("YangyiYY/LVLM_NLF", "000d8016277caffa635cbe9ae12ef7beea45dbbe",
                  ("VLSafe/harmlessness_examine.jsonl",)),
         ImagesOf(("vlsafe",), COCO_IMAGES, folders=("train2017",), always=True)),
        size="≈0.2 MB + the 100 COCO train2017 images of the seeded sample (≈15 MB)",
        licence="questions: no licence declared; COCO images: Flickr terms of use",
    ),
    Release(
        "clip-study",
        (BuiltFrom("mmsafetybench", "vlsafe"),),
        size="100 + 100 images (copied from mmsafetybench and vlsafe)",
        licence="as mmsafetybench (CC BY-NC 4.0) and COCO", non_commercial=True,
        notes=("Safe images: the COCO photos of the VLSafe sample (the paper's own 100 are not "
               "published); fetches mmsafetybench and vlsafe first.",),
    ),
    Release(
        "mme",
        (HubFiles("darkyarding/MME", "7056f44", ("MME_Benchmark_release_version.zip",),
                  unpack=Unpack(anchor="existence")),),
        size="≈0.2 GB", licence="apache-2.0 (hub card); the MME README's terms apply",
    ),
    Release(
        "mmbench",
        (HubFiles("lmms-lab/MMBench_EN", "ecd23e001f5c649c959eda84b846a01cc6fafbde", ("data/dev-*.parquet",)),),
        size="≈98 MB", licence="none stated on the dataset card",
        notes=("Fallback: mmbench_dev_20230712.tsv from download.openmmlab.com (the loader reads it too).",),
    ),
    Release(
        "scienceqa",
        (_github_raw("lupantech/ScienceQA", SCIENCEQA_COMMIT, "data/scienceqa/problems.json", "problems.json"),
         _github_raw("lupantech/ScienceQA", SCIENCEQA_COMMIT, "data/scienceqa/pid_splits.json",
                     "pid_splits.json"),
         UrlFile("https://scienceqa.s3.us-west-1.amazonaws.com/images/test.zip", "test.zip",
                 unpack=Unpack(anchor="test", into="images"))),
        size="≈5 MB questions + ≈0.13 GB test images (estimate)", licence="CC BY-NC-SA 4.0",
        non_commercial=True,
    ),
    Release(
        "textvqa",
        (UrlFile(TEXTVQA + "data/TextVQA_0.5.1_val.json", "TextVQA_0.5.1_val.json",
                 sha256="4ceb5aadc1a41719d0a3e4dfdf06838bcfee1db569a9a65ee67d31c99893081d"),
         UrlFile(TEXTVQA + "data/TextVQA_Rosetta_OCR_v0.2_val.json", "TextVQA_Rosetta_OCR_v0.2_val.json",
                 sha256="5fe60362e43381e10b29bf25cc84bb0cebcabf155a32e7121208b51a5a02715c"),
         UrlFile(TEXTVQA + "images/train_val_images.zip", "train_val_images.zip",
                 unpack=Unpack(anchor="train_images"))),
        size="≈13 MB json + ≈7 GB image zip (3,166 validation images are read)",
        licence="CC BY 4.0 annotations; Open Images photos (CC BY 2.0)",
    ),
    Release(
        "vqav2",
        (UrlFile(VQA + "v2_Questions_Val_mscoco.zip", "v2_Questions_Val_mscoco.zip",
                 unpack=Unpack(keep=("v2_OpenEnded_mscoco_val2014_questions.json",))),
         UrlFile(VQA + "v2_Annotations_Val_mscoco.zip", "v2_Annotations_Val_mscoco.zip",
                 unpack=Unpack(keep=("v2_mscoco_val2014_annotations.json",))),
         UrlFile(VQA + "v2_Questions_Test_mscoco.zip", "v2_Questions_Test_mscoco.zip",
                 unpack=Unpack(keep=("v2_OpenEnded_mscoco_test-dev2015_questions.json",))),
         UrlFile("http://images.cocodataset.org/zips/val2014.zip", "val2014.zip",
                 unpack=Unpack(anchor="val2014"), full_only=True),
         UrlFile("http://images.cocodataset.org/zips/test2015.zip", "test2015.zip",
                 unpack=Unpack(anchor="test2015"), full_only=True),
         ImagesOf(("vqav2", "vqav2-testdev"), COCO_IMAGES, folders=("val2014", "test2015"))),
        size="≈0.1 GB questions/annotations + ≈6.2 GB val2014.zip + ≈12.4 GB test2015.zip "
             "(--only-needed: the images of the seeded subset only)",
        licence="CC BY 4.0 annotations; COCO images: Flickr terms of use",
        notes=("vqav2-testdev has no answers: scoring needs an EvalAI account and a manual upload of the "
               "answers to the VQA challenge server (https://eval.ai); this cannot be automated.",),
    ),
    Release(
        "mmmu-pro",
        (HubFiles("MMMU/MMMU_Pro", "cd9382dd4f8fa7704aa1007f004bfa63aabde6fc",
                  ("standard (10 options)/test-*.parquet", "vision/test-*.parquet")),),
        size="≈0.7 GB (standard) + ≈1.6 GB (vision)", licence="apache-2.0",
        notes=("The hub data was re-uploaded several times; the revision here is the one pinned.",),
    ),
)
