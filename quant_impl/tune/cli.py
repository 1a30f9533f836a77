"""``quantbench tune``: the command line over quant_impl.tune.search with the real judge."""

from __future__ import annotations

import datetime as _dt
import json
import sys
from typing import Any

from quant_impl.errors import QuantbenchError
from quant_impl.tune.search import FINALISTS, OBJECTIVES, Outcome, Trial

DEFAULT_ROUNDS = 10


def add_tune_parser(commands: Any, add_config_flags: Any) -> None:
    parser = commands.add_parser(
        "tune",
        help="find the fastest (or smallest) recipe within an accuracy budget, proven on the test split",
        description="Search recipes (every registered method this machine runs, the option sets their registrations "
        "list, and the PT2E int8 methods with their most sensitive Linears kept in FP32) for the fastest -- or "
        "smallest -- whose drop of the task's primary metric vs FP32 stays within --max-drop. Candidates are timed "
        "against FP32 in interleaved pairs and scored on the tuning split (the calibration split, never the test "
        f"split); only the {FINALISTS} best that hold the budget there are scored on the test split, once, and "
        "the answer is the best of those whose test drop holds it, with its paired 95 % interval and McNemar p. "
        "Exit 1 when no finalist holds the budget on the test split (the closest is printed with what it lost).",
        epilog="A saved recipe (--save NAME) runs like a method: pytest bench --quant-methods NAME, quantbench speed "
        "--methods NAME. It records the CPU class it was tuned on; pytest bench warns when it runs on another.",
    )
    add_config_flags(parser)
    parser.add_argument("--max-drop", type=float, default=0.5, metavar="PTS",
                        help="the largest drop of the primary metric vs FP32 allowed, in points (default 0.5)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="latency",
                        help="what 'best' means: latency (speedup vs FP32 at --batch-size) or size (bytes shipped); "
                        "default latency")
    parser.add_argument("--batch-size", dest="tune_batch", type=int, default=32, metavar="N",
                        help="texts per timed call (default 32)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="tokens per text (default: the task's benchmark length, 128 for imdb)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N",
                        help=f"interleaved timed calls per candidate and FP32 (default {DEFAULT_ROUNDS})")
    parser.add_argument("--budget-minutes", type=float, default=15.0, metavar="MIN",
                        help="stop building new candidates after this long and answer from what was measured "
                        "(default 15)")
    parser.add_argument("--methods", default=None, metavar="A,B",
                        help="search only these methods (default: every registered method this machine runs)")
    parser.add_argument("--method-options", default=None, metavar="METHOD.KEY=VALUE,...",
                        help="options every candidate of a method starts from (default: [tool.quantbench.method_options])")
    parser.add_argument("--save", default=None, metavar="NAME",
                        help="save the answer as recipe NAME in the recipes file (quantbench-recipes.toml beside "
                        "pyproject.toml, [tool.quantbench] recipes, or $QUANTBENCH_RECIPES)")
    parser.add_argument("--compare-inc", action="store_true",
                        help="after choosing, also show what Intel Neural Compressor's rule picks on the same "
                        "candidates (the first quantized default-option candidate in registration order whose test "
                        "drop holds the budget); this reads the test split of more candidates, for the comparison only")
    parser.add_argument("--json", action="store_true",
                        help="print the result and the trace as one JSON object on the last line")
    parser.set_defaults(handler=_cmd_tune)


def _cmd_tune(args: Any) -> int:
    from quant_impl.cli import config_from_args
    from quant_impl.hardware import get_hardware
    from quant_impl.measure.machine import machine_info
    from quant_impl.session.store import BenchSession
    from quant_impl.tune.judge import TUNING_SPLIT, SessionJudge
    from quant_impl.tune.search import Search, inc_pick
    from quant_impl.tune.space import candidate_space

    if args.rounds < 3:
        raise QuantbenchError("--rounds must be >= 3 (a median of fewer calls is one noisy call)")
    if args.tune_batch < 1:
        raise QuantbenchError("--batch-size must be >= 1")
    if args.budget_minutes <= 0:
        raise QuantbenchError("--budget-minutes must be > 0")
    cfg = config_from_args(args)
    if cfg.embedding:
        raise QuantbenchError(f"tune scores candidates by a labelled classification metric; task {cfg.task} is an "
                              "embedding task (judge its methods with quantbench speed --accuracy)")
    seq_len = args.seq_len or max(cfg.seq_lens)
    if not 1 <= seq_len <= cfg.max_length:
        raise QuantbenchError(f"--seq-len must be between 1 and max_length {cfg.max_length}, got {seq_len}")
    hardware = get_hardware(f"cpu-{cfg.threads}t" if cfg.threads else "cpu")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    candidates, skipped = candidate_space(cfg.method_options, hardware, "classification", methods)
    for name, reason in skipped.items():
        print(f"skipping {reason}", file=sys.stderr)
    session = BenchSession(cfg)
    task = session.baseline.task
    machine = machine_info()
    sizes = {name: len(session.baseline.data[name]) for name in ("test", TUNING_SPLIT)}
    say = (lambda line: print(line, file=sys.stderr)) if args.json else print
    say(f"tuning for {machine['cpu_model']} ({machine['cpu_class']} class), {hardware.describe()}, batch "
        f"{args.tune_batch} x {seq_len} tokens; task {cfg.task}, {task.primary_metric} drop <= {args.max_drop:g} pt "
        f"vs fp32; tuning split: {TUNING_SPLIT} ({sizes[TUNING_SPLIT]} texts), test split ({sizes['test']}) for "
        f"the finalists only; {len(candidates)} candidates, objective {args.objective}")
    judge = SessionJudge(session, hardware, args.tune_batch, seq_len, args.rounds)
    search = Search(judge, candidates, max_drop=args.max_drop, objective=args.objective,
                    budget_s=60 * args.budget_minutes, progress=say)
    outcome = search.run()
    inc = None
    if args.compare_inc:  # INC's config set: the quantized recipes, tried in registration order
        from quant_impl.methods import get_method

        quantized = [t for t in outcome.trials if get_method(t.candidate.method).precision != "fp32"]
        inc = inc_pick(judge, quantized, args.max_drop, order=lambda c: get_method(c.method).order)
    for trial in outcome.trials:
        if trial.test is not None and trial.status not in ("finalist", "chosen"):
            trial.why = (trial.why + "; " if trial.why else "") + "test split read after the choice, for the INC comparison"
    result = _result(outcome, inc, args, cfg, machine, hardware, seq_len, sizes, task, skipped)
    saved = None
    if args.save and outcome.chosen is not None:
        from quant_impl.tune.recipes import save_recipe

        chosen = outcome.chosen
        saved = save_recipe(args.save, chosen.candidate.method, dict(chosen.candidate.options),
                            {"describe": chosen.candidate.label, "tuned_on": _tuned_on(result),
                             "trace": [_trace_row(row) for row in result["candidates"]]})
        result["saved"] = {"name": args.save, "path": str(saved)}
    _print(result, say)
    if args.save and outcome.chosen is None:
        say(f"nothing saved as {args.save}: no recipe held the budget")
    if saved:
        say(f"saved as recipe {args.save} in {saved}: pytest bench --quant-methods {args.save}")
    if args.json:
        print(json.dumps(result, sort_keys=True, default=str))
    return 0 if outcome.chosen is not None else 1


def _tuned_on(result: dict[str, Any]) -> dict[str, Any]:
    chosen = result["chosen"]
    return {
        "cpu_class": result["cpu_class"], "cpu_model": result["cpu_model"], "profile": result["profile"],
        "task": result["task"], "model": result["model"], "objective": result["objective"],
        "max_drop_pts": result["max_drop_pts"], "batch_size": result["batch_size"], "seq_len": result["seq_len"],
        "speedup_vs_fp32": chosen["speedup_vs_fp32"], "size_bytes": chosen["size_bytes"],
        "tuning_drop_pts": chosen["tuning"]["drop_pts"], "test_drop_pts": chosen["test"]["drop_pts"],
        "test_drop_ci95": list(chosen["test"]["ci95"]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _trace_row(row: dict[str, Any]) -> dict[str, Any]:
    """One candidate as the recipe file keeps it (the report's trace summary)."""
    return {"recipe": row["recipe"], "status": row["status"], "speedup_vs_fp32": row["speedup_vs_fp32"],
            "tuning_drop_pts": (row["tuning"] or {}).get("drop_pts"), "test_drop_pts": (row["test"] or {}).get("drop_pts"),
            "why": row["why"]}


def _resolution(trial: Trial | None, max_drop: float, examples: int) -> str | None:
    """Why the test split cannot prove the budget, when it cannot: an interval wider than the budget."""
    if trial is None or trial.test is None or trial.test.ci95 is None:
        return None
    lo, hi = trial.test.ci95
    if hi <= max_drop:
        return None
    return (f"the test split ({examples} texts) cannot resolve a {max_drop:g}-pt budget for {trial.candidate.label}: "
            f"its drop's 95 % interval is [{lo:.2f}, {hi:.2f}] pt, so a true drop up to {hi:.2f} pt is consistent "
            f"with it (one text is {100 / examples:.2f} pt); a larger test split would narrow it")


def _result(outcome: Outcome, inc: Trial | None, args: Any, cfg: Any, machine: dict[str, Any], hardware: Any,
            seq_len: int, sizes: dict[str, int], task: Any, skipped: dict[str, str]) -> dict[str, Any]:
    chosen = outcome.chosen
    return {
        "cpu_model": machine["cpu_model"], "cpu_class": machine["cpu_class"], "hardware": hardware.describe(),
        "profile": cfg.profile, "task": cfg.task, "model": cfg.model, "primary_metric": task.primary_metric,
        "objective": outcome.objective, "max_drop_pts": outcome.max_drop, "batch_size": args.tune_batch,
        "seq_len": seq_len, "rounds": args.rounds, "split_sizes": sizes, "seconds": round(outcome.seconds, 1),
        "budget_minutes": args.budget_minutes, "budget_spent": outcome.budget_spent,
        "chosen": chosen.to_dict() if chosen else None,
        "closest": outcome.closest.to_dict() if outcome.closest else None,
        "resolution": _resolution(chosen or outcome.closest, outcome.max_drop, sizes["test"]),
        "inc_rule": inc.to_dict() if inc else None,
        "candidates": [t.to_dict() for t in outcome.trials],
        "skipped": skipped,
    }


def _drop(score: dict[str, Any] | None) -> str:
    if not score:
        return "-"
    text = f"{score['drop_pts']:.2f}"
    if score.get("ci95"):
        text += f" [{score['ci95'][0]:.2f}, {score['ci95'][1]:.2f}]"
    return text


def _print(result: dict[str, Any], say: Any) -> None:
    rows = result["candidates"]
    width = max(len(r["recipe"]) for r in rows) + 2
    say(f"\n{'recipe':<{width}}{'status':<10}{'vs fp32':>8}{'MB':>7}{'tuning drop':>13}{'test drop [95% CI]':>24}  why")
    for r in rows:
        speed = f"{r['speedup_vs_fp32']:.2f}x" if r["speedup_vs_fp32"] else "-"
        size = f"{r['size_bytes'] / 1e6:.1f}" if r["size_bytes"] else "-"
        say(f"{r['recipe']:<{width}}{r['status']:<10}{speed:>8}{size:>7}{_drop(r['tuning']):>13}"
            f"{_drop(r['test']):>24}  {r['why']}")
    chosen, closest = result["chosen"], result["closest"]
    say("")
    if chosen:
        test = chosen["test"]
        say(f"answer: {chosen['recipe']}: {chosen['speedup_vs_fp32']:.2f}x fp32 at batch {result['batch_size']}, "
            f"{chosen['size_bytes'] / 1e6:.1f} MB; test drop {_drop(test)} pt, McNemar p {test['mcnemar_p']:.3g} "
            f"(tuning split: {chosen['tuning']['drop_pts']:.2f}); on this {result['cpu_class']} CPU")
    elif closest:
        say(f"no recipe holds {result['max_drop_pts']:g} pt on the test split: the closest is {closest['recipe']}, "
            f"which loses {_drop(closest['test'])} pt at {closest['speedup_vs_fp32']:.2f}x fp32")
    else:
        say(f"no candidate held {result['max_drop_pts']:g} pt even on the tuning split")
    if result["resolution"]:
        say(f"note: {result['resolution']}")
    finalists = [r for r in rows if r["status"] in ("finalist", "chosen")]
    if finalists:
        gaps = ", ".join(f"{r['recipe']} {r['tuning']['drop_pts']:.2f} -> {r['test']['drop_pts']:.2f}" for r in finalists)
        say(f"optimism gap (tuning -> test drop, pt): {gaps}")
    inc = result["inc_rule"]
    if inc:
        say(f"INC's rule (first quantized method in registration order whose test drop holds) would pick {inc['recipe']}: "
            f"{inc['speedup_vs_fp32']:.2f}x fp32, test drop {_drop(inc['test'])} pt")
    if result["budget_spent"]:
        say(f"the {result['budget_minutes']:g}-minute budget was spent: untried candidates are listed above")
