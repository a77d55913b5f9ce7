"""Answer files written by other pipelines, scored by this suite's metrics (``python -m eta score``).

Each benchmark reads the file its official pipeline writes:

* ``scienceqa-img``, ``textvqa``, ``vqav2``: LLaVA's answer JSONL (``question_id``, ``prompt``,
  ``text`` per line, as ``model_vqa_science.py`` / ``model_vqa_loader.py`` write it); VQAv2 also
  takes the submission JSON of ``convert_vqav2_for_submission.py`` (``[{question_id, answer}]``).
  These need the release's annotations (``--data``): ``problems.json``,
  ``TextVQA_0.5.1_val.json``, ``v2_mscoco_val2014_annotations.json``.
* ``mme``: the per-subtask ``<subtask>.txt`` result files of LLaVA's ``convert_answer_to_mme.py``
  (a directory of them, or one file).
* ``mmbench``: the prediction TSV (or xlsx) LLaVA's ``convert_mmbench_for_submission.py`` writes
  (``index``, options ``A``-``D``, ``answer``, ``prediction``).
* ``mmmu-pro-standard`` / ``mmmu-pro-vision``: MMMU-Pro's inference JSONL (``id``, ``options``,
  ``answer``, ``response``).

Judge replies: ``usr`` reads the file DripNowhy/ETA ``eval_usr.py`` saves (JSONL of ``question``,
``response``, ``safety``, or ``{"result": [...]}``); ``wintie`` the JSON ``helpful_wintie_ai.py``
saves (``win``, ``tie``, ``lose``, ``evaluations``).

Every function returns ``{name: Metric}``; ``protocol`` picks the official or the strict reading.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from eta.metrics.core import Metric, aggregate, check_protocol, rate
from eta.metrics.judged import unsafe_rate, win_tie_rate
from eta.metrics.mmbench import MMBENCH_CIRCULAR_STRIDE, MMBenchItem, mmbench_scores
from eta.metrics.mme import (
    MME_COGNITION,
    MME_PERCEPTION,
    MMEItem,
    mme_scores,
    mme_scores_official,
    split_result_lines,
)
from eta.metrics.mmmu_pro import MMMUProItem, mmmu_pro_scores
from eta.metrics.scienceqa import SCIENCEQA_LETTERS, scienceqa_choice
from eta.metrics.vqa import textvqa_accuracy, vqa_accuracy, vqa_eval_accuracy

log = logging.getLogger(__name__)

Metrics = dict[str, Metric]


class AnswerFileError(ValueError):
    """An answer file (or its annotations) that cannot be read; the message names file and line."""


# --------------------------------------------------------------------------------- reading files


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise AnswerFileError(f"{path}:{number}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise AnswerFileError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnswerFileError(f"{path}: not JSON ({err.msg})") from None


def _field(row: dict[str, Any], key: str, path: Path, where: str) -> Any:
    if key not in row:
        raise AnswerFileError(f"{path} ({where}): no {key!r} field")
    return row[key]


def _annotation_file(data: Path | None, name: str, benchmark: str) -> Path:
    if data is None:
        raise AnswerFileError(f"scoring {benchmark} needs the release's {name}: pass --data DIR")
    found = [data] if data.is_file() else sorted(data.rglob(name))
    if not found:
        raise AnswerFileError(f"{data}: no {name} below it (the {benchmark} annotations)")
    return found[0]


# ------------------------------------------------------------------------------------ ScienceQA


def score_scienceqa(answers: Path, data: Path | None, protocol: str) -> Metrics:
    """``accuracy``: the IMG questions (official: predictions whose prompt holds ``<image>``;
    strict: test problems with an image); ``accuracy_all``: every test problem, a missing
    prediction wrong (as ``eval_science_qa.py`` counts its total)."""
    problems = _read_json(_annotation_file(data, "problems.json", "scienceqa-img"))
    predictions = {str(row.get("question_id")): row for row in read_jsonl(answers)}
    test = {pid: p for pid, p in problems.items() if isinstance(p, dict) and p.get("split") == "test"}
    img_hits = img_n = all_hits = failed = missing = 0
    for pid, problem in test.items():
        pred = predictions.get(pid)
        missing += pred is None
        text = "FAILED" if pred is None else str(pred.get("text", ""))
        pick = scienceqa_choice(text, len(problem["choices"]), protocol)
        failed += pick == -1
        right = pick == problem["answer"]
        all_hits += right
        if pred is None:
            with_image = False
        elif protocol == "official":
            with_image = "<image>" in str(pred.get("prompt", ""))
        else:
            with_image = bool(problem.get("image"))
        img_n += with_image
        img_hits += right and with_image
    unknown = len(set(predictions) - set(test))
    counts = {"unparsed": failed, "missing": missing, "not_in_test_split": unknown}
    if len(SCIENCEQA_LETTERS) < max((len(p["choices"]) for p in test.values()), default=0):
        log.warning("scienceqa: some problems have more choices than letters A-E")
    return {"accuracy": rate("accuracy", img_hits, img_n, "higher", counts),
            "accuracy_all": rate("accuracy_all", all_hits, len(test), "higher", counts)}


# -------------------------------------------------------------------------------------- TextVQA


def textvqa_question(prompt: str, path: Path, number: int) -> str:
    """The question inside a LLaVA TextVQA prompt, lower-cased (``eval_textvqa.py``)."""
    lines = prompt.split("\n")
    if prompt.startswith("OCR tokens: "):
        match = re.search(r"Question: (.*?) Short answer:", prompt, re.DOTALL)
        if match:
            return match.group(1).lower()
    elif "Reference OCR token: " in prompt and len(lines) == 3:
        return (lines[1] if prompt.startswith("Reference OCR token:") else lines[0]).lower()
    elif len(lines) == 2:
        return lines[0].lower()
    raise AnswerFileError(f"{path}: answer {number}: cannot find the question in its prompt")


def score_textvqa(answers: Path, data: Path | None, protocol: str) -> Metrics:
    """``vqa_accuracy`` over the answer lines; each is matched to its annotation by
    (image id, question) as ``eval_textvqa.py`` does (LLaVA's ``question_id`` is the image id)."""
    check_protocol(protocol)
    rows = _read_json(_annotation_file(data, "TextVQA_0.5.1_val.json", "textvqa"))["data"]
    by_key = {(str(r["image_id"]), str(r["question"]).lower()): r for r in rows}
    scores = []
    for number, row in enumerate(read_jsonl(answers), 1):
        key = (str(_field(row, "question_id", answers, f"answer {number}")),
               textvqa_question(str(_field(row, "prompt", answers, f"answer {number}")), answers, number))
        if key not in by_key:
            raise AnswerFileError(f"{answers}: answer {number}: no annotation for image {key[0]!r}, "
                                  f"question {key[1]!r}")
        scores.append(textvqa_accuracy(str(row.get("text", "")), by_key[key]["answers"]))
    return {"vqa_accuracy": aggregate("vqa_accuracy", scores)}


# ---------------------------------------------------------------------------------------- VQAv2


def _vqav2_answers(answers: Path) -> tuple[dict[str, str], bool]:
    """{question_id: answer} and whether the file is a submission (answers already converted)."""
    if answers.suffix == ".json":
        content = _read_json(answers)
        if not isinstance(content, list):
            raise AnswerFileError(f"{answers}: expected a list of {{question_id, answer}}")
        return {str(r["question_id"]): str(r["answer"]) for r in content}, True
    return {str(r.get("question_id")): str(r.get("text", "")) for r in read_jsonl(answers)}, False


def score_vqav2(answers: Path, data: Path | None, protocol: str) -> Metrics:
    """``vqa_accuracy``. Official: every annotated question, a missing answer the empty string
    (as the submission converter writes it), raw answers through the converter's processor then
    ``vqaEval.py``. Strict: the answered questions only, read by the strict VQA accuracy."""
    check_protocol(protocol)
    annotations = _read_json(_annotation_file(data, "v2_mscoco_val2014_annotations.json", "vqav2"))
    gts = {str(a["question_id"]): [x["answer"] for x in a["answers"]] for a in annotations["annotations"]}
    predictions, converted = _vqav2_answers(answers)
    missing = sum(q not in predictions for q in gts)
    unknown = sum(q not in gts for q in predictions)
    scores = []
    for qid, humans in gts.items():
        if qid not in predictions and protocol == "strict":
            continue
        answer = predictions.get(qid, "")
        if protocol == "official":
            scores.append(vqa_eval_accuracy(answer, humans) if converted or qid not in predictions
                          else vqa_accuracy(answer, humans, "official"))
        else:
            scores.append(vqa_accuracy(answer, humans, "strict"))
    return {"vqa_accuracy": aggregate("vqa_accuracy", scores,
                                      counts={"missing_responses": missing, "unknown_ids": unknown})}


# ------------------------------------------------------------------------------------------ MME


def _mme_files(answers: Path) -> dict[str, Path]:
    tasks = MME_PERCEPTION + MME_COGNITION
    files = [answers] if answers.is_file() else sorted(answers.glob("*.txt"))
    found = {p.stem: p for p in files if p.stem in tasks}
    if not found:
        raise AnswerFileError(f"{answers}: no MME result file named after a subtask "
                              f"(<subtask>.txt, e.g. existence.txt)")
    return found


def score_mme(answers: Path, protocol: str) -> Metrics:
    """Perception / cognition totals and per-subtask acc, acc+, score from the result files.
    Strict reads a line without tabs as the previous response going on (a line break in it)."""
    lines = {task: split_result_lines(path.read_text(encoding="utf-8"))
             for task, path in _mme_files(answers).items()}
    if check_protocol(protocol) == "official":
        return mme_scores_official(lines)
    items: list[MMEItem] = []
    for task, task_lines in lines.items():
        for number, line in enumerate(task_lines, 1):
            fields = line.rstrip("\n").split("\t", 3)
            if len(fields) == 4:
                items.append(MMEItem(subtask=task, image_id=f"{task}/{fields[0]}", answer=fields[2],
                                     response=fields[3], question=fields[1]))
            elif items and items[-1].subtask == task:  # a response's own line break: it goes on
                last = items.pop()
                items.append(replace(last, response=f"{last.response}\n{line.rstrip(chr(10))}"))
            else:
                raise AnswerFileError(f"{answers}/{task}.txt:{number}: expected file, question, "
                                      "answer and response separated by tabs")
    return mme_scores(items, "strict")


# -------------------------------------------------------------------------------------- MMBench


def _read_table(path: Path):
    import pandas as pd

    if path.suffix in (".xlsx", ".xls"):
        try:
            return pd.read_excel(path)
        except ImportError as err:
            raise AnswerFileError(f"{path}: reading xlsx needs openpyxl ({err}); "
                                  "or pass the TSV") from None
    return pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)


def _cell(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value)
    return None if text.strip().lower() in ("", "nan", "none") else text


def score_mmbench(answers: Path, protocol: str) -> Metrics:
    """``circular_accuracy`` (the paper's number) and ``accuracy`` (original order only)."""
    check_protocol(protocol)
    frame = _read_table(answers)
    missing_columns = [c for c in ("index", "A", "B", "answer", "prediction") if c not in frame.columns]
    if missing_columns:
        raise AnswerFileError(f"{answers}: missing columns {missing_columns}")
    items = []
    for row in frame.to_dict("records"):
        index = int(float(row["index"]))
        options = {k: v for k in "ABCD" if k in row and (v := _cell(row[k])) is not None}
        items.append(MMBenchItem(group=str(index % MMBENCH_CIRCULAR_STRIDE),
                                 shift=index // MMBENCH_CIRCULAR_STRIDE, options=options,
                                 answer=str(row["answer"]).strip(), response=_cell(row["prediction"]) or ""))
    return mmbench_scores(items)


# ------------------------------------------------------------------------------------- MMMU-Pro


def score_mmmu_pro(answers: Path, protocol: str) -> Metrics:
    """Accuracy over the lines of MMMU-Pro's inference JSONL."""
    check_protocol(protocol)
    items = []
    for number, row in enumerate(read_jsonl(answers), 1):
        where = f"line {number}"
        options = _field(row, "options", answers, where)
        options = ast.literal_eval(str(options)) if not isinstance(options, list) else options
        response = row.get("response")
        items.append(MMMUProItem(item_id=str(_field(row, "id", answers, where)),
                                 options=[str(o) for o in options], answer=str(_field(row, "answer", answers, where)),
                                 response=response if isinstance(response, str) else ""))
    return mmmu_pro_scores(items)


# -------------------------------------------------------------------------------- judge replies


def score_usr_replies(answers: Path, protocol: str) -> Metrics:
    """USR from MD-Judge replies saved by ``eval_usr.py`` (the ``safety`` field)."""
    from eta.judges.safety import parse_md_judge

    if answers.suffix == ".jsonl":
        rows = read_jsonl(answers)
    else:
        content = _read_json(answers)
        rows = content.get("result") if isinstance(content, dict) else None
        if not isinstance(rows, list):
            raise AnswerFileError(f"{answers}: expected {{\"result\": [...]}} or JSONL")
    replies = [_field(row, "safety", answers, f"reply {n}") for n, row in enumerate(rows, 1)]
    return unsafe_rate(parse_md_judge(str(r), protocol).label for r in replies)


def _wintie_outcomes(evaluations: list[dict[str, Any]], protocol: str, path: Path) -> Iterable[str]:
    from eta.judges.helpfulness import pairwise_outcome, parse_pairwise_choice, same_start

    for number, ev in enumerate(evaluations, 1):
        ours, theirs = str(ev.get("our_answer", "")), str(ev.get("compete_answer", ""))
        unasked = same_start(ours, theirs) if protocol == "official" else ours.strip() == theirs.strip()
        if unasked:
            yield "tie"
            continue
        side = _field(ev, "side", path, f"evaluation {number}")
        yield pairwise_outcome(parse_pairwise_choice(str(ev.get("result", "")), protocol), side == 0)


def score_wintie_replies(answers: Path, protocol: str) -> Metrics:
    """Win-tie rate from the JSON ``helpful_wintie_ai.py`` saves.

    That file does not save which side each answer was shown on, so without a ``side`` field
    per evaluation (0: ours was Assistant 1) the rate is the file's own ``win`` / ``tie`` /
    ``lose`` counters; the replies are re-read (official) to check those counters and to count
    the replies with no verdict. With ``side`` everywhere, every reply is re-read under
    ``protocol`` (strict: only identical answers are a tie without a reply)."""
    from eta.judges.helpfulness import parse_pairwise_choice, same_start

    check_protocol(protocol)
    content = _read_json(answers)
    if not isinstance(content, dict) or "evaluations" not in content:
        raise AnswerFileError(f"{answers}: expected the object helpful_wintie_ai.py writes "
                              "(win, tie, lose, evaluations)")
    evaluations = content["evaluations"]
    if all("side" in ev for ev in evaluations):
        return win_tie_rate(_wintie_outcomes(evaluations, protocol, answers))
    if protocol == "strict":
        raise AnswerFileError(f"{answers}: the strict reading needs each evaluation's 'side' "
                              "(which answer was Assistant 1); helpful_wintie_ai.py does not save it")
    same = sum(same_start(str(ev.get("our_answer", "")), str(ev.get("compete_answer", "")))
               for ev in evaluations)
    choices = [parse_pairwise_choice(str(ev.get("result", "")), "official") for ev in evaluations
               if not same_start(str(ev.get("our_answer", "")), str(ev.get("compete_answer", "")))]
    win, tie, lose = (int(content.get(k, 0)) for k in ("win", "tie", "lose"))
    if tie != same + choices.count("C") or win + lose != choices.count("A") + choices.count("B"):
        raise AnswerFileError(f"{answers}: the saved counters (win {win}, tie {tie}, lose {lose}) "
                              "disagree with the saved replies")
    invalid = choices.count(None)
    return win_tie_rate(["win"] * win + ["tie"] * tie + ["lose"] * lose + ["invalid"] * invalid)


# ------------------------------------------------------------------------------------- dispatch

BENCHMARKS = ("mmbench", "mme", "mmmu-pro-standard", "mmmu-pro-vision", "scienceqa-img", "textvqa", "vqav2")
JUDGE_REPLIES = ("usr", "wintie")


def score_answer_file(benchmark: str, answers: str | Path, data: str | Path | None = None,
                      protocol: str = "official") -> Metrics:
    """Score an answer file of ``benchmark`` in its official pipeline's format."""
    path, root = Path(answers), Path(data).expanduser() if data else None
    check_protocol(protocol)
    if not path.exists():
        raise AnswerFileError(f"{path}: no such answer file")
    if benchmark == "scienceqa-img":
        return score_scienceqa(path, root, protocol)
    if benchmark == "textvqa":
        return score_textvqa(path, root, protocol)
    if benchmark == "vqav2":
        return score_vqav2(path, root, protocol)
    if benchmark == "mme":
        return score_mme(path, protocol)
    if benchmark == "mmbench":
        return score_mmbench(path, protocol)
    if benchmark in ("mmmu-pro-standard", "mmmu-pro-vision"):
        return score_mmmu_pro(path, protocol)
    raise KeyError(f"no answer-file reader for {benchmark!r}; supported: {', '.join(BENCHMARKS)}")


def score_judge_replies(kind: str, answers: str | Path, protocol: str = "official") -> Metrics:
    """Score a file of judge replies: ``usr`` (eval_usr.py) or ``wintie`` (helpful_wintie_ai.py)."""
    path = Path(answers)
    if not path.exists():
        raise AnswerFileError(f"{path}: no such reply file")
    if kind == "usr":
        return score_usr_replies(path, protocol)
    if kind == "wintie":
        return score_wintie_replies(path, protocol)
    raise KeyError(f"unknown judge replies {kind!r}; supported: {', '.join(JUDGE_REPLIES)}")
