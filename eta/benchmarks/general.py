"""General-ability benchmarks, read from their official releases, with the response-format
prompts of the LLaVA-1.5 evaluation scripts the paper's numbers come from.

MME, MMBench, ScienceQA-IMG, TextVQA, VQAv2 and MMMU-Pro.
"""

from __future__ import annotations

import ast
import base64
import binascii
import re
from functools import partial
from pathlib import Path

from eta.benchmarks.errors import BadDataError
from eta.benchmarks.example import Example
from eta.benchmarks.files import (
    BadRow,
    find_dir,
    find_file,
    find_files,
    image_bytes,
    is_missing,
    optional_text,
    read_json,
    read_table,
    read_text,
    require_columns,
    text,
)
from eta.benchmarks.registry import LoadContext, register
from eta.metrics.mme import MME_COGNITION, MME_PERCEPTION

SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
OPTION_LETTER_PROMPT = "Answer with the option's letter from the given choices directly."
LETTERS = "ABCDEFGHIJ"


def lettered(options: list[str]) -> str:
    return "\n".join(f"{letter}. {option}" for letter, option in zip(LETTERS, options, strict=False))


# --- MME ------------------------------------------------------------------------------------

MME_IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")
_YES_NO_TAIL = re.compile(r"\s*Please answer yes or no\.\s*$")


def mme_prompt(question: str) -> str:
    """LLaVA-1.5's MME prompt: the yes/no tail replaced by the short-answer instruction."""
    return _YES_NO_TAIL.sub("", question) + "\n" + SHORT_ANSWER_PROMPT


def _mme_task_dirs(task_dir: Path) -> tuple[Path, Path]:
    """(questions, images): split into two folders for some tasks, mixed for the others."""
    if (task_dir / "questions_answers_YN").is_dir():
        return task_dir / "questions_answers_YN", task_dir / "images"
    return task_dir, task_dir


def _mme_image(image_dir: Path, stem: str) -> Path:
    for suffix in MME_IMAGE_SUFFIXES:
        if (image_dir / f"{stem}{suffix}").is_file():
            return image_dir / f"{stem}{suffix}"
    return image_dir / f"{stem}{MME_IMAGE_SUFFIXES[0]}"  # missing: reported by the image check


@register(
    "mme", description="MME perception (10 tasks) and cognition (4 tasks), two yes/no questions "
    "per image (meta['group'] pairs them for acc+)",
    kind="general", paper_size=2374, url="https://github.com/BradyFU/Awesome-Multimodal-Large-"
    "Language-Models/tree/Evaluation (MME_Benchmark_release_version)",
    layout="<task>/questions_answers_YN/*.txt + <task>/images/ or <task>/*.txt next to the images, "
    "for the 14 tasks (optionally inside MME_Benchmark/)",
    categories=True,
)
def load_mme(ctx: LoadContext) -> list[Example]:
    base = ctx.root / "MME_Benchmark" if (ctx.root / "MME_Benchmark").is_dir() else ctx.root
    examples: list[Example] = []
    for task in MME_PERCEPTION + MME_COGNITION:
        question_dir, image_dir = _mme_task_dirs(find_dir(base, task))
        for path in sorted(question_dir.glob("*.txt")):
            examples.extend(_mme_file(ctx, task, path, _mme_image(image_dir, path.stem)))
    return examples


def _mme_file(ctx: LoadContext, task: str, path: Path, image: Path) -> list[Example]:
    """The two ``question<TAB>Yes|No`` lines about one image."""
    group = f"{task}/{path.stem}"
    eval_type = "perception" if task in MME_PERCEPTION else "cognition"

    def make(number: int, line: str) -> Example:
        question, _, answer = line.rstrip("\n").partition("\t")
        if not question.strip() or answer.strip() not in ("Yes", "No"):
            raise BadRow("expected 'question<TAB>Yes|No'")
        return Example(
            benchmark=ctx.name, id=f"{group}/{number}", question=mme_prompt(question),
            image=image, category=task, reference=answer.strip(),
            meta={"group": group, "eval_type": eval_type, "image_name": image.name,
                  "mme_question": question},
        )

    lines = [(number, line) for number, line in
             enumerate(read_text(path).splitlines(), 1) if line.strip()]
    return list(ctx.rows(path, lines, make, unit="line"))


# --- MMBench --------------------------------------------------------------------------------

MMBENCH_TSVS = ("mmbench_dev_20230712.tsv", "MMBench_DEV_EN.tsv", "mmbench_dev_en_20231003.tsv")


def _mmbench_option(row: dict, letter: str) -> str | None:
    value = row.get(letter)
    if is_missing(value) or str(value).strip().lower() in ("nan", "none"):
        return None
    return str(value)


def mmbench_example(ctx: LoadContext, row: dict, image: Path) -> Example:
    """LLaVA-1.5's single-round MMBench prompt: hint, question, lettered options, instruction."""
    options = []
    for letter in "ABCD":
        option = _mmbench_option(row, letter)
        if option is None:
            break
        options.append(option)
    if len(options) < 2:
        raise BadRow("fewer than two options")
    hint = _mmbench_option(row, "hint")
    question = (f"{hint}\n" if hint else "") + text(row, "question")
    try:
        index = int(float(text(row, "index")))
    except ValueError:
        raise BadRow(f"'index' {row.get('index')!r} is not a number") from None
    return Example(
        benchmark=ctx.name, id=str(index),
        question=f"{question}\n{lettered(options)}\n{OPTION_LETTER_PROMPT}",
        image=image, category=optional_text(row, "category"),
        reference=optional_text(row, "answer"), choices=tuple(options),
        meta={"index": index, "circular_group": index % 1_000_000, "group": str(index % 1_000_000), "hint": hint,
              "l2_category": optional_text(row, "l2-category") or optional_text(row, "L2-category"),
              "source": optional_text(row, "source"), "split": optional_text(row, "split")},
    )


def _mmbench_tsv_rows(ctx: LoadContext, path: Path):
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    require_columns(path, frame.columns, ("index", "question", "A", "B", "image"))
    directory = ctx.images.directory(ctx.name, path)

    def make(number: int, row: dict) -> Example:
        try:
            data = base64.b64decode(text(row, "image"), validate=True)
        except binascii.Error as err:
            raise BadRow(f"'image' is not base64: {err}") from err
        return mmbench_example(ctx, row, ctx.images.add(directory, text(row, "index"), data))

    return ctx.rows(path, enumerate(frame.to_dict("records"), 1), make)


def _mmbench_hub_rows(ctx: LoadContext, path: Path):
    directory = ctx.images.directory(ctx.name, path)

    def make(number: int, row: dict) -> Example:
        data = image_bytes(row.get("image"))
        return mmbench_example(ctx, row, ctx.images.add(directory, text(row, "index"), data))

    rows = read_table(path, required=("index", "question", "A", "B", "image"))
    return ctx.rows(path, enumerate(rows, 1), make)


@register(
    "mmbench", description="MMBench dev (English), single round as in LLaVA-1.5's evaluation",
    kind="general", paper_size=4377,
    url="https://github.com/open-compass/MMBench (mmbench_dev_20230712.tsv); "
    "hub copy: https://huggingface.co/datasets/lmms-lab/MMBench_EN",
    layout="mmbench_dev_20230712.tsv (or MMBench_DEV_EN.tsv), or the hub copy's data/dev-*.parquet",
    categories=True,
)
def load_mmbench(ctx: LoadContext) -> list[Example]:
    hub = sorted(ctx.root.glob("data/dev-*.parquet"))
    if hub:
        return [example for path in hub for example in _mmbench_hub_rows(ctx, path)]
    return list(_mmbench_tsv_rows(ctx, find_file(ctx.root, *MMBENCH_TSVS)))


# --- ScienceQA-IMG --------------------------------------------------------------------------


def scienceqa_prompt(hint: str, question: str, choices: list[str]) -> str:
    """LLaVA-1.5's ScienceQA prompt (the CQM-A file plus the single-prediction instruction)."""
    context = f"Context: {hint}\n" if hint.strip() else ""
    return f"{context}{question}\n{lettered(choices)}\n{OPTION_LETTER_PROMPT}"


@register(
    "scienceqa-img", description="ScienceQA test questions that have an image (SQA-IMG)",
    kind="general", paper_size=2017, data_key="scienceqa",
    url="https://github.com/lupantech/ScienceQA (problems.json, images/test)",
    layout="problems.json + images/test/<problem id>/<image>",
    categories=True,
)
def load_scienceqa(ctx: LoadContext) -> list[Example]:
    path = find_file(ctx.root, "problems.json", "data/scienceqa/problems.json")
    image_dir = find_dir(path.parent, "images/test", "test")
    problems = read_json(path)
    if not isinstance(problems, dict):
        raise BadDataError(f"{path}: expected an object keyed by problem id")

    def make(pid: str, problem: dict) -> Example:
        choices = problem.get("choices")
        answer = problem.get("answer")
        if not isinstance(choices, list) or len(choices) < 2 or len(choices) > len(LETTERS):
            raise BadRow("'choices' must list 2 to 10 options")
        if not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise BadRow(f"'answer' {answer!r} is not an index into 'choices'")
        hint = problem.get("hint") or ""
        return Example(
            benchmark=ctx.name, id=str(pid),
            question=scienceqa_prompt(hint, text(problem, "question"), [str(c) for c in choices]),
            image=image_dir / str(pid) / text(problem, "image"), category=optional_text(problem, "subject"),
            reference=LETTERS[answer], choices=tuple(str(c) for c in choices),
            meta={"hint": hint, "grade": problem.get("grade"), "topic": problem.get("topic"),
                  "skill": problem.get("skill")},
        )

    rows = [(pid, problem) for pid, problem in problems.items()
            if isinstance(problem, dict) and problem.get("split") == "test" and problem.get("image")]
    return list(ctx.rows(path, rows, make, unit="problem"))


# --- TextVQA --------------------------------------------------------------------------------


def textvqa_prompt(question: str, ocr_tokens: list[str]) -> str:
    """LLaVA-1.5's TextVQA prompt, with the Rosetta OCR tokens as reference."""
    ocr = f"\nReference OCR token: {', '.join(ocr_tokens)}" if ocr_tokens else ""
    return f"{question}{ocr}\n{SHORT_ANSWER_PROMPT}"


def _data_list(path: Path, key: str) -> list:
    content = read_json(path)
    rows = content.get(key) if isinstance(content, dict) else None
    if not isinstance(rows, list):
        raise BadDataError(f"{path}: expected an object with a list under {key!r}")
    return rows


@register(
    "textvqa", description="TextVQA validation set with Rosetta OCR tokens in the prompt",
    kind="general", paper_size=5000, url="https://textvqa.org/dataset (TextVQA_0.5.1_val.json, "
    "TextVQA_Rosetta_OCR_v0.2_val.json, train_val_images.zip)",
    layout="TextVQA_0.5.1_val.json + TextVQA_Rosetta_OCR_v0.2_val.json + train_images/<image_id>.jpg",
)
def load_textvqa(ctx: LoadContext) -> list[Example]:
    path = find_file(ctx.root, "TextVQA_0.5.1_val.json")
    ocr_path = find_file(ctx.root, "TextVQA_Rosetta_OCR_v0.2_val.json")
    image_dir = find_dir(ctx.root, "train_images")
    ocr = {str(row.get("image_id")): row.get("ocr_tokens") or []
           for row in _data_list(ocr_path, "data") if isinstance(row, dict)}

    def make(key: str, row: dict) -> Example:
        if not isinstance(row, dict):
            raise BadRow("expected a JSON object")
        image_id = text(row, "image_id")
        if image_id not in ocr:
            raise BadRow(f"image {image_id} has no entry in {ocr_path.name}")
        return Example(
            benchmark=ctx.name, id=text(row, "question_id"),
            question=textvqa_prompt(text(row, "question"), [str(t) for t in ocr[image_id]]),
            image=image_dir / f"{image_id}.jpg", reference=list(row.get("answers") or []) or None,
            meta={"image_id": image_id, "ocr_tokens": list(ocr[image_id])},
        )

    rows = [(row.get("question_id", f"#{n}") if isinstance(row, dict) else f"#{n}", row)
            for n, row in enumerate(_data_list(path, "data"))]
    return list(ctx.rows(path, rows, make, unit="question"))


# --- VQAv2 ----------------------------------------------------------------------------------

VQAV2_SPLITS = {
    # name: (questions file, annotations file or None, image folder, image prefix)
    "vqav2": ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json",
              "val2014", "COCO_val2014_"),
    "vqav2-testdev": ("v2_OpenEnded_mscoco_test-dev2015_questions.json", None,
                      "test2015", "COCO_test2015_"),
}


def load_vqav2(ctx: LoadContext, split: str) -> list[Example]:
    questions_name, annotations_name, image_folder, prefix = VQAV2_SPLITS[split]
    path = find_file(ctx.root, questions_name)
    image_dir = find_dir(ctx.root, image_folder)
    annotations = {}
    if annotations_name:
        annotations = {row.get("question_id"): row for row in
                       _data_list(find_file(ctx.root, annotations_name), "annotations")
                       if isinstance(row, dict)}

    def make(key, row: dict) -> Example:
        if not isinstance(row, dict) or not isinstance(row.get("image_id"), int):
            raise BadRow("expected an object with an integer 'image_id'")
        annotation = annotations.get(row.get("question_id"), {})
        if annotations_name and not annotation:
            raise BadRow(f"no annotation in {annotations_name}")
        answers = [a.get("answer") for a in annotation.get("answers", []) if isinstance(a, dict)]
        return Example(
            benchmark=ctx.name, id=text(row, "question_id"),
            question=f"{text(row, 'question')}\n{SHORT_ANSWER_PROMPT}",
            image=image_dir / f"{prefix}{row['image_id']:012d}.jpg",
            category=annotation.get("answer_type"), reference=answers or None,
            meta={"image_id": row["image_id"], "question_type": annotation.get("question_type"),
                  "multiple_choice_answer": annotation.get("multiple_choice_answer")},
        )

    rows = [(row.get("question_id", f"#{n}") if isinstance(row, dict) else f"#{n}", row)
            for n, row in enumerate(_data_list(path, "questions"))]
    return list(ctx.rows(path, rows, make, unit="question"))


register(
    "vqav2", description="VQAv2 val2014 with annotations (scored offline; the paper's numbers are "
    "test-dev, see vqav2-testdev)",
    kind="general", data_key="vqav2", url="https://visualqa.org/download.html",
    layout="v2_OpenEnded_mscoco_val2014_questions.json + v2_mscoco_val2014_annotations.json + "
    "val2014/COCO_val2014_<12-digit image id>.jpg",
    categories=True,
)(partial(load_vqav2, split="vqav2"))
register(
    "vqav2-testdev", description="VQAv2 test-dev 2015 questions, no answers (scored by the "
    "evaluation server), the split of the paper's table",
    kind="general", paper_size=107394, data_key="vqav2", url="https://visualqa.org/download.html",
    layout="v2_OpenEnded_mscoco_test-dev2015_questions.json + test2015/COCO_test2015_<id>.jpg",
)(partial(load_vqav2, split="vqav2-testdev"))


# --- MMMU-Pro -------------------------------------------------------------------------------

MMMU_PRO_CONFIGS = {"standard": "standard (10 options)", "vision": "vision"}
# The "direct" prompts of the MMMU-Pro release (mmmu-pro/prompts.yaml).
MMMU_PRO_PROMPTS = {
    "standard": "Answer with the option letter from the given choices directly.",
    "vision": "Answer with the option letter from the given choices directly. The last line of "
    "your response should be of the following format: 'Answer: $LETTER' (without quotes) where "
    "LETTER is one of options.",
}
_IMAGE_TAG = re.compile(r"<image\s+(\d+)>")


def mmmu_pro_options(row: dict) -> list[str]:
    options = row.get("options")
    if isinstance(options, str):
        try:
            options = ast.literal_eval(options)
        except (ValueError, SyntaxError) as err:
            raise BadRow(f"'options' is not a list literal: {err}") from err
    if not isinstance(options, (list, tuple)) or not 2 <= len(options) <= len(LETTERS):
        raise BadRow("'options' must list 2 to 10 options")
    return [str(option) for option in options]


def load_mmmu_pro(ctx: LoadContext, config: str) -> list[Example]:
    folder = MMMU_PRO_CONFIGS[config]
    files = find_files(ctx.root, f"{folder}/*.parquet", f"{folder}/*.arrow", f"{folder}/test/*.arrow")
    return [example for path in files for example in _mmmu_pro_file(ctx, config, path)]


def _mmmu_pro_file(ctx: LoadContext, config: str, path: Path) -> list[Example]:
    directory = ctx.images.directory(ctx.name, path)

    def make(number: int, row: dict) -> Example:
        example_id = text(row, "id")
        options = mmmu_pro_options(row)
        if config == "vision":
            question = MMMU_PRO_PROMPTS["vision"]
            images = [ctx.images.add(directory, example_id, image_bytes(row.get("image")))]
        else:
            question, images = _mmmu_pro_standard(ctx, directory, example_id, row, options)
        return Example(
            benchmark=ctx.name, id=example_id, question=question, image=images[0],
            category=optional_text(row, "subject"), reference=text(row, "answer"),
            choices=tuple(options),
            meta={"images": [str(image) for image in images], "img_type": optional_text(row, "img_type"),
                  "topic_difficulty": optional_text(row, "topic_difficulty")},
        )

    rows = read_table(path, required=("id", "options", "answer"))
    return list(ctx.rows(path, enumerate(rows, 1), make))


def _mmmu_pro_standard(ctx, directory, example_id, row, options) -> tuple[str, list[Path]]:
    """The official prompt with ``<image n>`` tags replaced by ``[image]`` (as the release's
    transformers script does); the tagged images in order of first mention."""
    prompt = f"{text(row, 'question')}\n{lettered(options)}\n{MMMU_PRO_PROMPTS['standard']}"
    order = list(dict.fromkeys(int(n) for n in _IMAGE_TAG.findall(prompt))) or [1]
    images = [ctx.images.add(directory, f"{example_id}-{n}", image_bytes(row.get(f"image_{n}"), f"image_{n}"))
              for n in order]
    return _IMAGE_TAG.sub("[image]", prompt), images


for _config in MMMU_PRO_CONFIGS:
    register(
        f"mmmu-pro-{_config}",
        description=f"MMMU-Pro {MMMU_PRO_CONFIGS[_config]}, direct-answer prompt"
        + ("; the first tagged image is Example.image, all of them in meta['images']"
           if _config == "standard" else ""),
        kind="general", paper_size=1730, data_key="mmmu-pro",
        url="https://huggingface.co/datasets/MMMU/MMMU_Pro",
        layout=f"'{MMMU_PRO_CONFIGS[_config]}'/test-*.parquet (hub layout) or a datasets "
        "save_to_disk export of that config",
        categories=True,
    )(partial(load_mmmu_pro, config=_config))
