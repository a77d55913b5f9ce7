"""VQA accuracy: VQAv2 (GT-Vision-Lab/VQA ``vqaEval.py``) and TextVQA (LLaVA ``m4c_evaluator.py``).

Both score a prediction by min(#humans who gave it / 3, 1), averaged over the ten leave-one-out
subsets of the ten human answers, after normalising answers (punctuation, number words, articles,
contractions: the lookup tables below are the official evaluators' data).

* TextVQA, both protocols: prediction and human answers go through the EvalAI answer processor
  (:func:`evalai_answer`), as ``m4c_evaluator.py`` does.
* VQAv2 ``official``: the paper's path. LLaVA's ``convert_vqav2_for_submission.py`` runs the
  EvalAI processor on every prediction (lower-case, commas and ``?`` removed, ``'s`` split off),
  and the current ``vqaEval.py`` then normalises prediction and human answers (punctuation, then
  number words and articles) only when the human answers are not all identical.
* VQAv2 ``strict``: no converter; the prediction is always normalised, the human answers get the
  punctuation step only, when they differ (the 2017 revision of ``vqaEval.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from eta.metrics.core import Metric, aggregate, check_protocol

# Lookup tables of the official VQA evaluation (GT-Vision-Lab/VQA
# PythonEvaluationTools/vqaEvaluation/vqaEval.py); the EvalAI answer processor in
# LLaVA's m4c_evaluator.py uses the same contractions, number words, articles and punctuation.
VQA_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
VQA_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
VQA_ARTICLES = ("a", "an", "the")
VQA_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<",
                   "@", "`", ",", "?", "!")
# The official period pattern: its "(?!<=\d)" is a (harmless) typo for a lookbehind, so it removes
# every period not followed by a digit. The official call passes re.UNICODE (32) as the count.
_VQA_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_VQA_PERIOD_MAX_SUBS = int(re.UNICODE)
_VQA_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")


def _vqa_punctuation(text: str) -> str:
    """Drop a punctuation mark glued to a space (or any mark if the text has a 1,000-style number),
    otherwise turn it into a space; then drop periods not followed by a digit."""
    out = text
    thousands = _VQA_DIGIT_COMMA_DIGIT.search(text) is not None
    for p in VQA_PUNCTUATION:
        glued = (p + " ") in text or (" " + p) in text  # tested on the input, as the official
        out = out.replace(p, "" if glued or thousands else " ")
    return _VQA_PERIOD.sub("", out, count=_VQA_PERIOD_MAX_SUBS)


def _vqa_digits_articles(text: str) -> str:
    """Lower-case, number words to digits, drop articles, restore contractions."""
    words = [VQA_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in VQA_ARTICLES]
    return " ".join(VQA_CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa_answer(text: str) -> str:
    """A predicted answer fully normalised as ``vqaEval.py`` normalises it."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _vqa_digits_articles(_vqa_punctuation(text))


def _leave_one_out_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """min(#other annotators who gave the prediction / 3, 1), averaged over leaving each of the
    (10) annotators out: the official average over the 10-choose-9 subsets."""
    if not gt_answers:
        raise ValueError("VQA accuracy needs at least one ground-truth answer")
    matches = sum(gt == prediction for gt in gt_answers)
    scores = [min(1.0, (matches - (gt == prediction)) / 3) for gt in gt_answers]
    return sum(scores) / len(scores)


def _strip_lines(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_eval_accuracy(answer: str, gt_answers: Sequence[str]) -> float:
    """``vqaEval.py`` (current revision) on one submitted answer: line breaks and tabs become
    spaces and both sides are stripped; only when the human answers are not all identical are
    both sides normalised (punctuation, then number words, articles, contractions)."""
    pred = _strip_lines(answer)
    gts = [_strip_lines(a) for a in gt_answers]
    if len(set(gts)) > 1:
        gts = [_vqa_digits_articles(_vqa_punctuation(a)) for a in gts]
        pred = _vqa_digits_articles(_vqa_punctuation(pred))
    return _leave_one_out_accuracy(pred, gts)


def vqa_accuracy(prediction: str, gt_answers: Sequence[str], protocol: str = "strict") -> float:
    """VQAv2 accuracy of one raw prediction under ``protocol`` (see the module docstring)."""
    if check_protocol(protocol) == "official":
        return vqa_eval_accuracy(evalai_answer(prediction), gt_answers)
    pred = normalize_vqa_answer(prediction)
    gts = list(gt_answers)
    if len(set(gts)) > 1:
        gts = [_vqa_punctuation(a) for a in gts]
    return _leave_one_out_accuracy(pred, gts)


def evalai_answer(text: str) -> str:
    """An answer as the EvalAI answer processor (``m4c_evaluator.py``; also LLaVA's VQAv2
    submission converter) writes it."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _vqa_digits_articles(_vqa_punctuation(text))


def textvqa_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """TextVQA accuracy of one prediction: prediction and human answers both normalised by the
    EvalAI processor, then the same leave-one-out VQA accuracy."""
    gts = [evalai_answer(a) for a in gt_answers]
    return _leave_one_out_accuracy(evalai_answer(prediction), gts)


def vqa_scores(predictions: Sequence[str], gt_answers: Sequence[Sequence[str]],
               protocol: str = "strict") -> dict[str, Metric]:
    """Mean VQAv2 accuracy with its standard error."""
    check_protocol(protocol)
    return {"accuracy": _mean_accuracy(predictions, gt_answers,
                                       lambda p, g: vqa_accuracy(p, g, protocol))}


def textvqa_scores(predictions: Sequence[str], gt_answers: Sequence[Sequence[str]],
                   protocol: str = "strict") -> dict[str, Metric]:
    """Mean TextVQA accuracy with its standard error (the same under both protocols)."""
    check_protocol(protocol)
    return {"accuracy": _mean_accuracy(predictions, gt_answers, textvqa_accuracy)}


def _mean_accuracy(predictions: Sequence[str], gt_answers: Sequence[Sequence[str]],
                   score: Callable[[str, Sequence[str]], float]) -> Metric:
    if len(predictions) != len(gt_answers):
        raise ValueError(f"{len(predictions)} predictions but {len(gt_answers)} answer lists")
    per_item = [score(p, g) for p, g in zip(predictions, gt_answers, strict=True)]
    return aggregate("accuracy", per_item)
