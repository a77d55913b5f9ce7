"""Headline numbers of a run: each notebook's ``metrics.json``, the index page, run comparisons.

The index page (``results/<run>/index.html``) stands alone in any browser: per notebook its status,
its headline figure (the first figure of the executed notebook, embedded as PNG), its numbers
beside the paper's, and a warning beside every metric whose judge gave too many invalid verdicts;
a banner says when the models are stand-ins and when the run did not finish.

The paper's reference numbers live here as data (``PAPER_REFERENCE``), in this project's units:
rates (USR, accuracies, win-tie) as fractions in [0, 1], MME in points, times in seconds or
minutes as the key says. The paper prints percentages; ``_percent`` converts them, so the
numbers below can be checked against the paper's tables by eye. Leaves are keyed
``benchmark/metric``, like the W&B summary, so a notebook can put them beside its own numbers::

    paper = paper_metrics("usr", "llava-1.5-7b", "eta", key_suffix="_eta")
    # {"spa-vl-harm/usr_eta": 0.1698, "figstep/usr_eta": 0.078, ...}
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
STATUS_FILE = "reproduce.json"
INDEX_FILE = "index.html"

# ------------------------------------------------------------------------ the paper's numbers

USR_BENCHMARKS = ("spa-vl-harm", "mmsafetybench-sd_typo", "figstep", "figstep-suffix", "cross-modality-attack")


def _percent(values: Mapping[str, float]) -> dict[str, float]:
    return {key: round(value / 100, 6) for key, value in values.items()}


def _usr(*percents: float) -> dict[str, float]:
    """Table 1 row: USR % on the five harmlessness benchmarks, in the table's column order."""
    return _percent({f"{b}/usr": v for b, v in zip(USR_BENCHMARKS, percents, strict=True)})


def _general(mme_p: float, mme_c: float, mmbench: float, sqa: float, textvqa: float, vqav2: float) -> dict[str, float]:
    """General-ability row: MME in points, the rest accuracy % (VQAv2 is test-dev in the paper).
    MMBench is the evaluation server's circular accuracy on the file LLaVA-1.5 submits (every
    circular shift of a question right), so it stands beside our ``circular_accuracy``."""
    return {"mme/perception": mme_p, "mme/cognition": mme_c,
            **_percent({"mmbench/circular_accuracy": mmbench, "scienceqa-img/accuracy": sqa,
                        "textvqa/accuracy": textvqa, "vqav2-testdev/accuracy": vqav2})}


def _ablation(usr_percent: float, helpful_score: float) -> dict[str, float]:
    return {"spa-vl-harm/usr": round(usr_percent / 100, 6), "spa-vl-harm/helpful_score": helpful_score}


PAPER_REFERENCE: dict[str, Any] = {
    # Table 1: unsafe rate (USR) judged by MD-Judge; model -> method -> benchmark/usr.
    "usr": {
        "llava-1.5-7b": {
            "vanilla": _usr(46.04, 40.46, 58.60, 62.00, 97.50),
            "ecso": _usr(23.40, 15.89, 37.40, 59.00, 95.00),
            "eta": _usr(16.98, 15.83, 7.80, 22.60, 22.50),
        },
        "llava-1.5-13b": {
            "vanilla": _usr(40.75, 41.01, 61.60, 66.40, 100),
            "ecso": _usr(15.47, 13.81, 15.00, 37.20, 95.00),
            "eta": _usr(15.09, 11.67, 22.60, 20.80, 12.50),
        },
        "internvl-chat-1.0-7b": {
            "vanilla": _usr(46.79, 37.20, 47.40, 52.80, 97.50),
            "ecso": _usr(28.68, 15.54, 41.20, 49.40, 95.00),
            "eta": _usr(16.98, 13.81, 17.40, 10.80, 25.00),
        },
        "internlm-xcomposer-2.5-7b": {
            "vanilla": _usr(27.55, 21.79, 22.60, 50.80, 7.50),
            "ecso": _usr(19.62, 14.94, 16.60, 42.40, 5.00),
            "eta": _usr(13.96, 7.32, 6.00, 7.20, 5.00),
        },
    },
    # General ability, LLaVA-1.5-7B; model -> method -> benchmark/metric.
    "general_ability": {
        "llava-1.5-7b": {
            "vanilla": _general(1505.88, 357.86, 64.60, 69.51, 58.20, 78.51),
            "eta": _general(1506.13, 357.86, 64.69, 69.51, 58.15, 78.51),
            "ecso": _general(1495.88, 360.00, 63.83, 69.36, 58.15, 78.39),
        },
    },
    # GPT-4 pairwise win-tie rate of ETA against each opponent on SPA-VL Help; model -> opponent.
    "helpfulness": {
        "llava-1.5-7b": {
            "vanilla": _percent({"spa-vl-help/win_tie": 96.6}),
            "ecso": _percent({"spa-vl-help/win_tie": 80.8}),
            "vlguard-posthoc-lora": _percent({"spa-vl-help/win_tie": 54.6}),
            "vlguard-mixed-lora": _percent({"spa-vl-help/win_tie": 56.7}),
        },
    },
    # Table 4: seconds per response; wall clock of SPA-VL Harm on one A6000 in minutes.
    "efficiency": {
        "llava-1.5-7b": {
            "vanilla": {"mmbench/seconds_per_response": 0.23, "scienceqa-img/seconds_per_response": 0.22,
                        "spa-vl-harm/wall_clock_minutes": 37.0},
            "ecso": {"mmbench/seconds_per_response": 0.48, "scienceqa-img/seconds_per_response": 0.38},
            "eta": {"mmbench/seconds_per_response": 0.28, "scienceqa-img/seconds_per_response": 0.36,
                    "spa-vl-harm/wall_clock_minutes": 150.0},
        },
    },
    # Table 5: components, LLaVA-1.5-7B on SPA-VL Harm: USR and GPT-4 helpful score (1-10).
    "ablation": {
        "llava-1.5-7b": {
            "none": _ablation(46.04, 7.64),
            "deep": _ablation(32.08, 8.10),
            "shallow": _ablation(30.94, 8.25),
            "shallow+rm_guide": _ablation(16.60, 8.38),
            "eta": _ablation(16.98, 8.50),
        },
    },
    # Motivation figure: SPA-VL Harm USR along the way from the text LLM to ETA.
    "motivation": {
        "vicuna-text": _percent({"spa-vl-harm/usr": 20.38}),
        "llava-text-only": _percent({"spa-vl-harm/usr": 29.06}),
        "llava-image": _percent({"spa-vl-harm/usr": 46.04}),
        "llava-image+shallow": _percent({"spa-vl-harm/usr": 30.94}),
        "llava-image+shallow+deep": _percent({"spa-vl-harm/usr": 16.98}),
    },
    # The thresholds the paper chose (tau_pre on the cosine scale, from 100 MM-SafetyBench vs 100 COCO images).
    "thresholds": {"tau_pre": 0.16, "tau_post": 0.06},
}


def paper_metrics(section: str, *path: str, key_suffix: str = "", benchmark: str | None = None) -> dict[str, float]:
    """The leaf dict at ``PAPER_REFERENCE[section][path...]``, keys ``benchmark/metric<key_suffix>``.

    ``benchmark`` renames the benchmark part of every key (e.g. to put the paper's
    ``mmsafetybench-sd_typo`` numbers beside a run on another benchmark name). An unknown key is
    an error listing the known ones.
    """
    node: Any = PAPER_REFERENCE
    for part in (section, *path):
        if not isinstance(node, Mapping) or part not in node:
            known = ", ".join(sorted(node)) if isinstance(node, Mapping) else "(a leaf)"
            raise KeyError(f"no paper reference at {'/'.join((section, *path))!r}: {part!r} not in {known}")
        node = node[part]
    if not isinstance(node, Mapping) or not all(isinstance(v, (int, float)) for v in node.values()):
        raise KeyError(f"{'/'.join((section, *path))!r} is not a table of numbers; go one level deeper")
    out = {}
    for key, value in node.items():
        bench, _, metric = key.rpartition("/")
        bench = benchmark if benchmark is not None and bench else bench
        new_key = f"{bench}/{metric}{key_suffix}" if bench else f"{metric}{key_suffix}"
        if new_key in out:
            raise KeyError(f"renaming the benchmark to {benchmark!r} makes {new_key!r} ambiguous")
        out[new_key] = float(value)
    return out


# ------------------------------------------------------------------------------ metrics.json


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def write_metrics(path: str | os.PathLike, metrics: Mapping[str, Any], *, notebook: str, profile: str,
                  stand_in: bool, paper_reference: Mapping[str, float] | None = None,
                  notes: Mapping[str, str] | None = None) -> Path:
    """Write a notebook's headline numbers (keys ``benchmark/metric``) and the paper's beside them.

    ``metrics`` values are numbers or ``eta.metrics.Metric`` (value, stderr and n are kept).
    ``paper_reference`` maps the same keys to the paper's numbers (same units); keys without
    a number of ours are dropped. ``path`` is the file or the notebook's output directory.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path / METRICS_FILE
    values, details = {}, {}
    for key, value in metrics.items():
        if "/" not in key:
            raise ValueError(f"metric key {key!r} must look like 'benchmark/metric'")
        if hasattr(value, "to_dict"):
            details[key] = value.to_dict()
            value = value.value
        values[key] = _finite(value)
    paper = {k: _finite(v) for k, v in (paper_reference or {}).items() if k in values}
    unmatched = set(paper_reference or {}) - set(values)
    if unmatched:
        log.debug("paper numbers without a metric of ours (not written): %s", sorted(unmatched))
    payload = {
        "notebook": notebook, "profile": profile, "stand_in": bool(stand_in),
        "run_id": os.environ.get("ETA_RUN_ID"),
        "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "metrics": values, "paper": paper, "details": details, "notes": dict(notes or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    log.info("wrote %s (%d metrics)", path, len(values))
    return path


def read_metrics(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    return json.loads((path / METRICS_FILE if path.is_dir() else path).read_text())


def run_metrics(results_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """notebook name -> its ``metrics.json`` for every notebook folder of one run."""
    root = Path(results_dir)
    return {p.parent.name: read_metrics(p) for p in sorted(root.glob(f"*/{METRICS_FILE}"))}


def read_status(results_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(results_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:  # written atomically by reproduce; anything else is not ours
        log.warning("%s is not valid JSON; ignored", path)
        return {}


def is_complete(status: Mapping[str, Any]) -> bool:
    """Whether a run folder's status says it finished. A folder without a status (notebooks run by
    hand) is not flagged; one from before the state existed counts as finished once its total time
    was written."""
    if not status:
        return True
    state = status.get("state")
    return state == "complete" if state is not None else status.get("elapsed_s") is not None


# ------------------------------------------------------------------------ invalid verdicts

INVALID_METRIC = "invalid_rate"
DEFAULT_MAX_INVALID_RATE = 0.2


def invalid_flags(entry: Mapping[str, Any], threshold: float = DEFAULT_MAX_INVALID_RATE) -> dict[str, str]:
    """metric key -> warning, for every ``benchmark/invalid_rate[/method]`` above ``threshold`` and
    every metric of the same benchmark and method that rests on that judge's verdicts."""
    metrics = entry.get("metrics", {})
    flags: dict[str, str] = {}
    for key, value in metrics.items():
        bench, _, rest = key.partition("/")
        name, _, method = rest.partition("/")
        if name != INVALID_METRIC or value is None or value <= threshold:
            continue
        note = f"{value:.0%} of the judge's verdicts were invalid (more than {threshold:.0%})"
        for other in metrics:
            o_bench, _, o_rest = other.partition("/")
            o_name, _, o_method = o_rest.partition("/")
            if o_bench == bench and o_method == method and (o_name in JUDGED_METRICS or other == key):
                flags[other] = note
    return flags


# metrics computed from a judge's verdicts (an invalid verdict shrinks the sample they rest on)
JUDGED_METRICS = ("usr", "invalid_rate", "win_tie", "win_rate", "tie_rate", "lose_rate", "helpful_score",
                  "helpfulness")


def invalid_rate_warnings(results_dir: str | os.PathLike,
                          threshold: float = DEFAULT_MAX_INVALID_RATE) -> list[str]:
    """One line per notebook metric whose invalid-verdict rate passes ``threshold``."""
    lines = []
    for notebook, entry in run_metrics(results_dir).items():
        for key, value in entry.get("metrics", {}).items():
            if key.split("/")[1:2] == [INVALID_METRIC] and value is not None and value > threshold:
                lines.append(f"{notebook}: {key} = {value:.2f} is above {threshold:g}: the judge's verdicts "
                             f"were mostly unusable, so the metrics beside it rest on few samples")
    return lines


# -------------------------------------------------------------------------------- index page


def _fmt(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


STYLE = """body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}.banner{background:#fff3cd;border:2px solid #e0a800;
padding:.8em 1em;font-weight:600}.failed{color:#b00020;font-weight:600}.ok{color:#1b7f3a}pre{white-space:pre-wrap;background:#f8f8f8;padding:.5em}
.incomplete{background:#fde2e1;border:2px solid #b00020;padding:.8em 1em;font-weight:600}
.warn{color:#8a5300;font-weight:600}figure{margin:.5em 0 1em}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}td.note{text-align:left}"""

# Marks every figure as loaded or broken once the browser has decoded it (a broken one says so).
FIGURE_CHECK = """document.querySelectorAll('figure img').forEach(function (img) {
  function mark() {
    img.dataset.state = img.naturalWidth > 0 ? 'loaded' : 'broken';
    if (img.naturalWidth === 0) { img.insertAdjacentText('afterend', ' (this figure failed to load)'); }
  }
  if (img.complete) { mark(); } else { img.addEventListener('load', mark); img.addEventListener('error', mark); }
});"""

INCOMPLETE_BANNER = ("This run did NOT finish: it was stopped (or is still running) before its last notebook. "
                     "Numbers below may be missing or stale; rerun it with the same --run-id to replace them.")

STAND_IN_BANNER = ("These results come from STAND-IN models (tiny random twins or the SmolLM2 stand-ins), "
                   "not the paper's checkpoints. They show that the pipeline runs; they are not a "
                   "reproduction of the paper's numbers, which are shown beside them for reference only.")


def _metrics_table(entry: Mapping[str, Any], threshold: float = DEFAULT_MAX_INVALID_RATE) -> str:
    rows = ["<tr><th>metric</th><th>ours</th><th>paper</th><th>note</th></tr>"]
    paper = entry.get("paper", {})
    flags = invalid_flags(entry, threshold)
    for key, value in entry.get("metrics", {}).items():
        note = f"<span class='warn' title='{html.escape(flags[key])}'>&#9888; {html.escape(flags[key])}</span>" \
            if key in flags else ""
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{_fmt(value)}</td><td>{_fmt(paper.get(key))}</td>"
                    f"<td class='note'>{note}</td></tr>")
    return "<table class='metrics'>" + "".join(rows) + "</table>"


def headline_figure(executed: Path) -> tuple[str, str] | None:
    """(base64 PNG, caption) of the first figure an executed notebook shows, or None."""
    import nbformat

    try:
        notebook = nbformat.read(str(executed), as_version=4)
    except Exception as exc:  # a notebook cut short by a kill may not parse; the page is built anyway
        log.warning("%s: cannot read figures: %s", executed, exc)
        return None
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png") if isinstance(output, Mapping) else None
            if png:
                caption = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return "".join(png.split()), caption
    return None


def _figure(name: str, root: Path) -> str:
    found = headline_figure(root / f"{name}.ipynb") if (root / f"{name}.ipynb").is_file() else None
    if found is None:
        return ""
    png, caption = found
    return (f"<figure class='headline'><img alt='{html.escape(name)} headline figure' "
            f"src='data:image/png;base64,{png}'><figcaption>headline figure of {html.escape(name)} "
            f"(<code>{html.escape(caption[:100])}</code>)</figcaption></figure>")


def _notebook_section(name: str, status: Mapping[str, Any], entry: Mapping[str, Any] | None, root: Path,
                      threshold: float = DEFAULT_MAX_INVALID_RATE) -> str:
    parts = [f"<h2 id='{html.escape(name)}'>{html.escape(name)}</h2>"]
    links = [f"<a href='{html.escape(f)}'>{label}</a>"
             for f, label in ((f"{name}.html", "executed notebook (HTML)"), (f"{name}.ipynb", "notebook (.ipynb)"))
             if (root / f).exists()]
    state = status.get("status", "ok" if entry else "missing")
    elapsed = status.get("elapsed_s")
    line = f"<span class='{'ok' if state == 'ok' else 'failed'}'>{html.escape(state)}</span>"
    if elapsed is not None:
        line += f" in {elapsed:.1f} s"
    if entry and entry.get("stand_in"):
        line += " &middot; <b>stand-in models</b>"
    parts.append(f"<p>{line}{' &middot; ' if links else ''}{' &middot; '.join(links)}</p>")
    if status.get("error"):
        parts.append(f"<pre>{html.escape(status['error'])}</pre>")
    parts.append(_figure(name, root))
    if entry:
        parts.append(_metrics_table(entry, threshold))
        for key, note in entry.get("notes", {}).items():
            parts.append(f"<p><i>{html.escape(key)}</i>: {html.escape(note)}</p>")
    return "\n".join(parts)


def build_index(results_dir: str | os.PathLike) -> Path:
    """Write ``<results_dir>/index.html``: every notebook's headline table, ours beside the paper's."""
    root = Path(results_dir)
    status = read_status(root)
    metrics = run_metrics(root)
    by_name = {n["name"]: n for n in status.get("notebooks", [])}
    names = list(dict.fromkeys([*by_name, *metrics]))
    stand_in = any(m.get("stand_in") for m in metrics.values()) or bool(status.get("stand_in"))
    threshold = float(status.get("max_invalid_rate", DEFAULT_MAX_INVALID_RATE))
    title = f"ETA reproduction &middot; run {html.escape(status.get('run_id', root.name))}"
    header = [f"<h1>{title}</h1>"]
    facts = [f"profile <b>{html.escape(str(status.get('profile', '?')))}</b>"]
    if status.get("elapsed_s") is not None:
        facts.append(f"total {status['elapsed_s']:.1f} s")
    failed = [n for n, s in by_name.items() if s.get("status") != "ok"]
    if not is_complete(status):
        facts.append("<span class='failed'>incomplete</span>")
    facts.append(f"<span class='failed'>{len(failed)} failed</span>" if failed else
                 ("all notebooks ran" if is_complete(status) else f"{len(by_name)} notebook(s) done"))
    header.append(f"<p>{' &middot; '.join(facts)}</p>")
    if status and not is_complete(status):
        header.append(f"<div class='incomplete'>{html.escape(INCOMPLETE_BANNER)}</div>")
    if stand_in:
        header.append(f"<div class='banner'>{html.escape(STAND_IN_BANNER)}</div>")
    warnings = invalid_rate_warnings(root, threshold)
    if warnings:
        header.append("<ul class='warn'>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>")
    body = [_notebook_section(name, by_name.get(name, {}), metrics.get(name), root, threshold) for name in names]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>ETA run {html.escape(root.name)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(header)}{''.join(body)}"
            f"<script>{FIGURE_CHECK}</script></body></html>\n")
    out = root / INDEX_FILE
    out.write_text(page)
    log.info("index: %s", out)
    return out


# ------------------------------------------------------------------------------- comparisons


def resolve_run_dir(run: str | os.PathLike, results_root: str | os.PathLike = "results") -> Path:
    """A run directory given as a path or as a run id under ``results_root``."""
    path = Path(run)
    if path.is_dir():
        return path
    candidate = Path(results_root) / str(run)
    if candidate.is_dir():
        return candidate
    known = sorted(p.name for p in Path(results_root).glob("*") if p.is_dir()) if Path(results_root).is_dir() else []
    raise FileNotFoundError(f"no run {str(run)!r} (neither a directory nor under {results_root}/); "
                            f"known runs: {', '.join(known) or 'none'}")


def compare_runs(run_dirs: Sequence[str | os.PathLike], results_root: str | os.PathLike = "results"):
    """Headline metrics of several runs side by side: rows (notebook, metric), a column per run,
    and a ``paper`` column where the paper has the number. ``attrs["runs"]`` holds each run's
    profile and stand-in flag."""
    import pandas as pd

    columns: dict[str, dict[tuple[str, str], float | None]] = {}
    paper: dict[tuple[str, str], float | None] = {}
    runs = {}
    for run in run_dirs:
        root = resolve_run_dir(run, results_root)
        column: dict[tuple[str, str], float | None] = {}
        profiles = set()
        for notebook, entry in run_metrics(root).items():
            profiles.add(entry.get("profile"))
            for key, value in entry.get("metrics", {}).items():
                column[(notebook, key)] = value
                if key in entry.get("paper", {}):
                    paper.setdefault((notebook, key), entry["paper"][key])
        columns[root.name] = column
        status = read_status(root)
        if status.get("profile"):
            profiles.add(status["profile"])
        runs[root.name] = {"path": str(root), "profiles": sorted(p for p in profiles if p),
                           "stand_in": any(e.get("stand_in") for e in run_metrics(root).values())
                           or bool(status.get("stand_in")),
                           "complete": is_complete(status)}
    frame = pd.DataFrame(columns)
    if not frame.empty:
        frame["paper"] = pd.Series(paper, dtype=float)
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["notebook", "metric"])
        frame = frame.sort_index()
    frame.attrs["runs"] = runs
    return frame
