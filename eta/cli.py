"""Command line: ``python -m eta generate | list | judge | score | evaluate | calibrate | data fetch``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from eta.config import ConfigError, load_profile, parse_override
from eta.store import StoreError

DEFAULT_PROFILE = "local"

# Mistakes in what the user gave (files, names, values): one line on stderr and exit status 2.
# LookupError covers unknown benchmarks, models and methods; OSError unreadable or misplaced files.
USER_ERRORS = (ConfigError, ValueError, LookupError, OSError, StoreError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eta", description="ETA: evaluate then align VLM safety")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="answer one question with vanilla decoding and with ETA")
    question = gen.add_mutually_exclusive_group(required=True)
    question.add_argument("--question")
    question.add_argument("--question-file", help="read the question from this UTF-8 text file")
    gen.add_argument("--image", default=None, help="path of an image file (omit for text-only)")
    gen.add_argument("--profile", default=DEFAULT_PROFILE, help="params profile name or YAML path")
    gen.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a profile value, e.g. --set eta.tau_post=0.5 (repeatable)")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--json", action="store_true", help="print one JSON object")

    lst = sub.add_parser("list", help="list registered names")
    lst.add_argument("what", choices=["models", "benchmarks", "profiles", "methods"])
    lst.add_argument("--json", action="store_true")

    judge = sub.add_parser("judge", help="score a file of responses")
    judge.add_argument("judge", choices=["asr", "reward", "usr"],
                       help="asr: refusal-string attack success rate; reward: the profile's post-evaluator "
                            "score and unsafe flag per line; usr: the profile's safety judge")
    judge.add_argument("file", help="JSONL with `question` and `response` per line")
    judge.add_argument("--profile", default=DEFAULT_PROFILE, help="profile of the reward model / judge")
    judge.add_argument("--json", action="store_true", help="reward, usr: one JSON object per line only")

    score = sub.add_parser("score", help="score an answer file, or judge replies, written by another pipeline")
    what = score.add_mutually_exclusive_group(required=True)
    what.add_argument("--benchmark", help="mme, mmbench, scienceqa-img, textvqa, vqav2, mmmu-pro-standard, "
                      "mmmu-pro-vision: a file in the format its official pipeline writes")
    what.add_argument("--judge-replies", choices=["usr", "wintie"],
                      help="usr: eval_usr.py output; wintie: helpful_wintie_ai.py output")
    score.add_argument("--answers", required=True, help="the answer (or reply) file; MME: the result directory")
    score.add_argument("--data", default=None, help="the release's annotations (ScienceQA, TextVQA, VQAv2)")
    score.add_argument("--protocol", choices=["official", "strict"], default="official",
                       help="read answers as the official scripts do, or the stricter way (README)")
    score.add_argument("--json", action="store_true", help="one line of JSON (default: indented)")

    ev = sub.add_parser("evaluate", help="generate, judge and aggregate a benchmark with a method (resumable)")
    ev.add_argument("--profile", default=DEFAULT_PROFILE)
    ev.add_argument("--benchmark", required=True)
    ev.add_argument("--method", required=True, help="vanilla, eta, eta-deep-only, ..., ecso (list methods)")
    ev.add_argument("--limit", type=positive_int, default=None, help="a seeded subset of this many samples")
    ev.add_argument("--seed", type=int, default=None)
    ev.add_argument("--store", default=None, help="SQLite store (default: the profile's engine.store)")
    ev.add_argument("--data", default=None, help="benchmark release directory (default: env / ETA_DATA_DIR)")
    ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a profile value (repeatable)")
    ev.add_argument("--no-judge", action="store_true", help="generate only")
    ev.add_argument("--export", default=None, help="also write this run's records as JSONL here")
    ev.add_argument("--overwrite", action="store_true",
                    help="let --export replace an existing file that is not an earlier export")
    ev.add_argument("--json", action="store_true", help="print one JSON object of metrics")

    sub.add_parser("reproduce", help="run the analysis notebooks with papermill (see `reproduce --help`)",
                   add_help=False)
    sub.add_parser("compare", help="headline metrics of local runs side by side (see `compare --help`)",
                   add_help=False)
    data = sub.add_parser("data", help="benchmark data: `data fetch [BENCH ...]` downloads and checks releases")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="download the releases of the named benchmarks (none: all) "
                                "into their loaders' layout, pinned and checked (a second fetch verifies)")
    fetch.add_argument("names", nargs="*", metavar="BENCH", help="benchmark or release names (none: every one)")
    fetch.add_argument("--dir", default=None, help="data directory (default: $ETA_DATA_DIR)")
    fetch.add_argument("--only-needed", action="store_true",
                       help="only the images the seeded subset reads (COCO per-image URLs), not whole archives")
    fetch.add_argument("--limit", type=int, default=None, help="with --only-needed: the subset size a run uses")
    fetch.add_argument("--seed", type=int, default=0, help="with --only-needed: the subset's seed")
    fetch.add_argument("--dry-run", action="store_true", help="print sources, revisions, sizes and licences only")

    cal = sub.add_parser("calibrate", help="a reward model on human labels: test AUC, Youden threshold, confusion")
    cal.add_argument("--profile", default=DEFAULT_PROFILE)
    cal.add_argument("--json", action="store_true")
    return parser


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def read_question(args) -> str:
    """The question of ``generate``: ``--question`` or the text of ``--question-file``."""
    if args.question_file is None:
        return args.question
    from pathlib import Path

    path = Path(args.question_file)
    if path.is_dir():
        raise ValueError(f"--question-file {path} is a directory, not a text file")
    try:
        return path.read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"--question-file {path} not found") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"--question-file {path} is not UTF-8 text (byte {err.start})") from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["reproduce"], ["compare"]):
        from eta.reproduce import main as reproduce_main

        return reproduce_main(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return 2


def error_text(exc: BaseException) -> str:
    """One line for a user mistake (a KeyError's message without the quotes repr adds)."""
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def cmd_generate(args) -> int:
    from eta.context import fit_questions
    from eta.alignment import ETA, open_image

    overrides = dict(parse_override(o) for o in args.overrides)
    profile = load_profile(args.profile, overrides)
    question = read_question(args)
    if not question.strip():
        raise ValueError("the question is empty")
    image = open_image(args.image)  # fail on a bad image before any model is loaded
    eta = ETA.from_profile(profile)
    question = fit_questions(eta.vlm, [question], [image], profile.eta.max_new_tokens,
                             truncate=profile.engine.long_question == "truncate", names=["the question"])[0]
    result = eta.run(question, args.image, seed=args.seed)
    payload = {"profile": profile.name, "stand_in": profile.stand_in, **result.to_dict()}
    if args.json:
        print(json.dumps(payload, ensure_ascii=False))
        return 0
    if profile.stand_in:
        print(f"[profile {profile.name}: stand-in models, not the paper's checkpoints]")
    s_pre = "n/a (no image)" if result.s_pre is None else f"{result.s_pre:.4f}"
    print(f"vanilla: {result.vanilla}\n")
    print(f"s_pre = {s_pre} (unsafe if >= {profile.eta.tau_pre}), "
          f"s_post = {result.s_post:.4f} (unsafe if <= {profile.eta.tau_post})")
    print(f"decision: {'align (' + result.branch + ')' if result.aligned else 'keep vanilla'}\n")
    print(f"ETA: {result.response}")
    print(f"\n[{result.timings['total']:.2f} s: generate {result.timings['generate']:.2f}, "
          f"evaluate {result.timings['evaluate']:.2f}, align {result.timings['align']:.2f}]")
    return 0


def cmd_list(args) -> int:
    rows: list[dict[str, Any]]
    if args.what == "models":
        from eta.model_registry import list_models

        rows = list_models()
    elif args.what == "methods":
        from eta.methods import METHODS

        rows = [{"name": m.name, "description": m.description} for m in METHODS.values()]
    elif args.what == "profiles":
        from eta.config import profile_names

        rows = [{"name": n, "description": load_profile(n).description} for n in profile_names()]
    else:
        from eta.benchmarks import list_benchmarks

        rows = [info if isinstance(info, dict) else vars(info) for info in list_benchmarks()]
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    for row in rows:
        extra = "  [stand-in]" if row.get("stand_in") else (f"  <{row['source']}>" if row.get("source") else "")
        kind = f"{row['kind']:7s} " if "kind" in row else ""
        print(f"{row['name']:32s} {kind}{row.get('description', '')}{extra}")
    return 0


def cmd_judge(args) -> int:
    if args.judge in ("reward", "usr"):
        from eta.file_judging import judge_file

        return judge_file(args.judge, args.file, load_profile(args.profile), as_json=args.json)
    from eta.judges import asr_from_jsonl

    print(json.dumps(asr_from_jsonl(args.file)))
    return 0


def cmd_score(args) -> int:
    from eta.answer_files import score_answer_file, score_judge_replies

    if args.judge_replies:
        metrics = score_judge_replies(args.judge_replies, args.answers, args.protocol)
    else:
        metrics = score_answer_file(args.benchmark, args.answers, args.data, args.protocol)
    payload = {"protocol": args.protocol, "metrics": {name: m.to_dict() for name, m in metrics.items()}}
    print(json.dumps(payload, indent=None if args.json else 2))
    return 0


def cmd_evaluate(args) -> int:
    from eta.engine import evaluate
    from eta.store import Store, check_export_path

    overrides = dict(parse_override(o) for o in args.overrides)
    profile = load_profile(args.profile, overrides)
    store_path = args.store or profile.engine.store
    if args.export:  # checked before any model loads
        check_export_path(args.export, store_path, overwrite=args.overwrite)
    with Store(store_path) as store:
        ev = evaluate(profile, args.benchmark, args.method, limit=args.limit, seed=args.seed, store=store,
                      data_root=args.data, judge=not args.no_judge)
        if ev is None:  # a shard other than the first: its part is in the store
            return 0
        if args.export:
            store.export_jsonl(args.export, ev.records, overwrite=args.overwrite)
    payload = ev.to_dict()
    if args.json:
        print(json.dumps(payload))
        return 0
    if profile.stand_in:
        print(f"[profile {profile.name}: stand-in models, not the paper's checkpoints]")
    print(f"{ev.run.method} on {ev.run.benchmark} ({len(ev.records)} samples, {ev.skipped} skipped), model {ev.run.model}")
    for name, m in ev.metrics.items():
        value = "n/a" if m["value"] is None else f"{m['value']:.4f}"
        spread = f" ± {m['stderr']:.4f}" if m.get("stderr") is not None else (
            f" [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]" if m.get("ci") and None not in m["ci"] else "")
        arrow = "↓" if m["direction"] == "lower" else "↑"
        print(f"  {name:24s} {value}{spread}  {arrow}  {m.get('counts') or ''}")
    return 0


def cmd_data(args) -> int:
    import os
    from pathlib import Path

    from eta.benchmarks import BenchmarkError
    from eta.fetch import FetchError, FetchRequest, describe, fetch, plan

    directory = args.dir or os.environ.get("ETA_DATA_DIR")
    request = FetchRequest(Path(directory).expanduser(), only_needed=args.only_needed, limit=args.limit,
                           seed=args.seed) if directory else None
    try:
        if (args.limit is not None or args.seed) and not args.only_needed:
            raise FetchError("--limit and --seed choose the subset of --only-needed; add --only-needed")
        plan(args.names)  # unknown names fail before anything else
        if args.dry_run:
            print(describe(args.names, request))
            return 0
        if request is None:
            raise FetchError("no data directory: pass --dir DIR or set $ETA_DATA_DIR")
        fetch(args.names, request, notify=lambda line: print(line, file=sys.stderr))
    except (FetchError, BenchmarkError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not os.environ.get("ETA_DATA_DIR") or Path(os.environ["ETA_DATA_DIR"]).expanduser() != request.root:
        print(f"done: export ETA_DATA_DIR={request.root} for the loaders to find it", file=sys.stderr)
    return 0


def cmd_calibrate(args) -> int:
    from eta.calibration import calibrate_reward_model

    report = calibrate_reward_model(load_profile(args.profile))
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


COMMANDS = {"generate": cmd_generate, "list": cmd_list, "judge": cmd_judge, "calibrate": cmd_calibrate,
            "evaluate": cmd_evaluate, "score": cmd_score, "data": cmd_data}
