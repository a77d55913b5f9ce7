"""MME: perception (10 subtasks) and cognition (4), two yes/no questions per image.

The answer is read as the MME release's ``eval_tool/calculation.py`` reads it (:func:`mme_answer`);
a subtask's score is (acc + acc+) x 100 in points, a family's score the sum of its subtasks.

* ``official``: the result files LLaVA's ``convert_answer_to_mme.py`` writes, read line by line as
  calculation.py reads them: consecutive lines are one image, a line that does not split into four
  tab fields is skipped, acc is over the lines read, acc+ over the line pairs.
* ``strict``: the two questions of an image are found by its id, whatever their order, and a
  response holding a tab or a line break is still read.
"""

from __future__ import annotations

import io
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eta.metrics.core import Metric, check_protocol, rate

log = logging.getLogger(__name__)

MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene",
                  "landmark", "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation",
                 "code_reasoning")


@dataclass(frozen=True)
class MMEItem:
    subtask: str
    image_id: str  # "<subtask>/<file stem>": the image both of its questions ask about
    answer: str  # "Yes" / "No"
    response: str
    question: str = ""  # the release's question line (official: written into the result line)


def mme_answer(response: str) -> str:
    """``yes`` / ``no`` / ``other`` as the MME tool extracts it.

    The response is lower-cased; an exact ``yes``/``no`` is taken, otherwise ``yes`` then ``no``
    is searched for in its first four characters only.
    """
    text = response.lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def _mme_subtask(name: str, items: Sequence[MMEItem]) -> dict[str, Metric]:
    by_image: dict[str, list[bool]] = defaultdict(list)
    other = 0
    for item in items:
        gold = item.answer.strip().lower()
        if gold not in ("yes", "no"):
            raise ValueError(f"MME {name}/{item.image_id}: answer must be yes/no, "
                             f"got {item.answer!r}")
        pred = mme_answer(item.response)
        other += pred == "other"
        by_image[item.image_id].append(pred == gold)
    odd = [img for img, marks in by_image.items() if len(marks) != 2]
    if odd:
        log.warning("MME %s: %d images do not have exactly two questions", name, len(odd))
    marks = [m for per_image in by_image.values() for m in per_image]
    images_right = sum(all(v) for v in by_image.values())
    counts = {"questions": len(marks), "images": len(by_image), "other": other}
    acc = rate(f"{name}/acc", sum(marks), len(marks), "higher", counts)
    acc_plus = rate(f"{name}/acc_plus", images_right, len(by_image), "higher", counts)
    score = (acc.value + acc_plus.value) * 100
    return {
        acc.name: acc,
        acc_plus.name: acc_plus,
        f"{name}/score": Metric(f"{name}/score", score, "higher", len(marks), counts=counts,
                                unit="points"),
    }


def check_subtasks(names) -> None:
    """Every name must be one of MME's 14 subtasks; the error lists the strangers."""
    unknown = set(names) - set(MME_PERCEPTION) - set(MME_COGNITION)
    if unknown:
        raise ValueError(f"unknown MME subtasks {sorted(unknown)}")


def _strict_scores(items: Iterable[MMEItem]) -> dict[str, Metric]:
    """Strict: per-subtask acc, acc+ and score, and the perception / cognition totals (points);
    an image's questions are found by ``image_id``, whatever their order.

    A total sums the subtasks present (NaN when none is); ``counts["subtasks"]`` says how many
    of the family's subtasks were there (10 for perception, 4 for cognition in a full run).
    """
    groups: dict[str, list[MMEItem]] = defaultdict(list)
    for item in items:
        groups[item.subtask].append(item)
    check_subtasks(groups)
    out: dict[str, Metric] = {}
    for name, group in groups.items():
        out.update(_mme_subtask(name, group))
    return _with_totals(out, {name: len(group) for name, group in groups.items()})


def _with_totals(out: dict[str, Metric], questions: dict[str, int]) -> dict[str, Metric]:
    """Add the perception / cognition sums over the subtasks present (NaN when none is)."""
    for family, names in (("perception", MME_PERCEPTION), ("cognition", MME_COGNITION)):
        present = [n for n in names if n in questions]
        if present and len(present) < len(names):
            log.warning("MME %s: only %d of %d subtasks present", family, len(present), len(names))
        total = sum(out[f"{n}/score"].value for n in present) if present else math.nan
        out[family] = Metric(family, total, "higher", sum(questions[n] for n in present),
                             counts={"subtasks": len(present)}, unit="points")
    return out


# --- official: the result files of LLaVA's convert_answer_to_mme.py, read by calculation.py ---


def mme_result_line(item: MMEItem) -> str:
    """One line of a per-subtask result file as LLaVA's ``convert_answer_to_mme.py`` writes it:
    ``<file stem>.txt``, question, gold answer and response, tab-separated. A response holding a
    tab or a line break breaks the line, as it does there."""
    stem = item.image_id.rsplit("/", 1)[-1]
    return "\t".join((f"{stem}.txt", item.question, item.answer, item.response)) + "\n"


def split_result_lines(text: str) -> list[str]:
    """The lines of a result file as ``open(...).readlines()`` returns them (universal newlines)."""
    return io.StringIO(text, newline=None).readlines()


def _official_subtask(name: str, lines: Sequence[str]) -> dict[str, Metric]:
    """``calculation.py`` on one subtask: consecutive lines pair up into images; a line that
    does not split into four tab-separated fields is skipped (its image cannot count for acc+)."""
    if len(lines) % 2:
        raise ValueError(f"MME {name}: {len(lines)} result lines; calculation.py pairs them into "
                         "images of two questions (a response with a line break splits its line)")
    marks: list[bool] = []
    images_right = other = unreadable = 0
    for first in range(0, len(lines), 2):
        right = 0
        for line in lines[first:first + 2]:
            fields = line.split("\t")
            if len(fields) != 4:
                unreadable += 1
                continue
            gold, pred = fields[2].lower(), mme_answer(fields[3])
            if gold not in ("yes", "no"):
                raise ValueError(f"MME {name}: gold answer must be yes/no, got {fields[2]!r}")
            marks.append(pred == gold)
            right += pred == gold
            other += pred == "other"
        images_right += right == 2
    images = len(lines) // 2
    counts = {"questions": len(marks), "images": images, "other": other, "unreadable": unreadable}
    acc = rate(f"{name}/acc", sum(marks), len(marks), "higher", counts)
    acc_plus = rate(f"{name}/acc_plus", images_right, images, "higher", counts)
    score = acc.value * 100 + acc_plus.value * 100
    return {acc.name: acc, acc_plus.name: acc_plus,
            f"{name}/score": Metric(f"{name}/score", score, "higher", len(marks), counts=counts,
                                    unit="points")}


def mme_scores_official(result_lines: Mapping[str, Sequence[str]]) -> dict[str, Metric]:
    """Official: the MME release's ``calculation.py`` on per-subtask result lines
    (``{subtask: lines}``, as :func:`split_result_lines` reads a ``<subtask>.txt``)."""
    check_subtasks(result_lines)
    out: dict[str, Metric] = {}
    for name, lines in result_lines.items():
        out.update(_official_subtask(name, lines))
    return _with_totals(out, {name: out[f"{name}/acc"].n for name in result_lines})


def mme_scores(items: Iterable[MMEItem], protocol: str = "strict") -> dict[str, Metric]:
    """Per-subtask acc, acc+ and score, and the perception / cognition totals (points).

    ``official`` writes the result lines LLaVA writes, in item order, and scores them as
    calculation.py does; ``strict`` pairs an image's questions by ``image_id``.
    """
    if check_protocol(protocol) == "strict":
        return _strict_scores(items)
    lines: dict[str, list[str]] = defaultdict(list)
    for item in items:
        lines[item.subtask].extend(split_result_lines(mme_result_line(item)))
    return mme_scores_official(lines)
