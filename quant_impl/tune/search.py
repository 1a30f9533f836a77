"""The search of ``quantbench tune``, apart from how candidates are built and scored (a ``Judge``), so it is tested
with a stub judge on no model at all.

The order of work, cheapest and most telling first:

1. **Speed** (or size): every candidate is built and timed against FP32, interleaved in pairs (the ratio is
   robust to VM drift). Candidates go in an expected-speed order (native int8 first, simulated kernels last), so
   a spent time budget leaves the slow ones untried.
2. **Tuning split**: candidates are scored on the tuning split (never the test split), best objective first;
   once ``finalists`` of them are within the budget, every slower candidate is pruned unscored (it cannot win).
   A spent time budget stops the scoring too, once one candidate passes (the best so far is the answer).
3. **Per-layer fallback**: a candidate faster than the best passing one that loses too much is rebuilt with its
   1, 2, 4, 8 most sensitive Linears in FP32 (the judge's ranking), fewest first; it stops at the first that
   passes, or once the fallback is no faster than the best passing candidate.
4. **Test split**: only the finalists are scored on it, once each. The answer is the best finalist whose test
   drop is within the budget; when none is, the search fails with the closest one and what it lost.

``inc_pick`` replays Intel Neural Compressor's rule on the same candidates for comparison (the first candidate in
a fixed order whose test drop passes), after the selection is made.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

from quant_impl.errors import QuantbenchError

OBJECTIVES = ("latency", "size")
FALLBACK_STEPS = (1, 2, 4, 8)
FINALISTS = 3
TUNING, TEST = "tuning", "test"


@dataclass(frozen=True)
class Candidate:
    """A recipe to try: a registered method and the options that differ from its defaults."""

    method: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    origin: str = "default"  # default | variant | fallback

    @property
    def label(self) -> str:
        if not self.options:
            return self.method
        parts = [f"fp32 x{len(v)}" if k == "float_layers" else f"{k}={_short(v)}" for k, v in sorted(self.options.items())]
        return f"{self.method}[{', '.join(parts)}]"

    def with_options(self, origin: str, **options: Any) -> "Candidate":
        return Candidate(self.method, {**self.options, **options}, origin)


@dataclass(frozen=True)
class Measured:
    """A candidate's build, timed against FP32 in the same interleaved rounds."""

    latency_s: float
    reference_s: float
    size_bytes: int
    build_seconds: float
    kernel: str = ""

    @property
    def speedup(self) -> float:
        return self.reference_s / self.latency_s


@dataclass(frozen=True)
class Score:
    """The primary metric's drop vs FP32 on one split, in points (``ci95`` and ``mcnemar_p`` on the test split)."""

    split: str
    examples: int
    value: float
    drop_pts: float
    ci95: tuple[float, float] | None = None
    mcnemar_p: float | None = None


class Judge(Protocol):
    """How candidates are built, timed and scored (quant_impl.tune.judge on a real baseline; stubs in the tests)."""

    def measure(self, candidate: Candidate) -> Measured: ...
    def score(self, candidate: Candidate, split: str) -> Score: ...
    def sensitive_layers(self, candidate: Candidate) -> list[str]: ...
    def release(self, candidate: Candidate) -> None: ...


@dataclass
class Trial:
    candidate: Candidate
    status: str = "queued"  # measured | failed | passed | over | pruned | untried | finalist | chosen
    why: str = ""
    measured: Measured | None = None
    tuning: Score | None = None
    test: Score | None = None

    def to_dict(self) -> dict[str, Any]:
        measured = self.measured
        return {
            "recipe": self.candidate.label, "method": self.candidate.method, "options": _jsonable(self.candidate.options),
            "origin": self.candidate.origin, "status": self.status, "why": self.why,
            "speedup_vs_fp32": measured.speedup if measured else None,
            "latency_ms": 1000 * measured.latency_s if measured else None,
            "size_bytes": measured.size_bytes if measured else None,
            "build_seconds": measured.build_seconds if measured else None,
            "kernel": measured.kernel if measured else None,
            "scored_on": [s.split for s in (self.tuning, self.test) if s],
            "tuning": dataclasses.asdict(self.tuning) if self.tuning else None,
            "test": dataclasses.asdict(self.test) if self.test else None,
        }


@dataclass
class Outcome:
    """What the search found: ``chosen`` (None when no finalist held the budget on the test split; then
    ``closest`` is the finalist that lost least), every trial in the order tried, and the time it took."""

    max_drop: float
    objective: str
    trials: list[Trial]
    chosen: Trial | None
    closest: Trial | None
    seconds: float
    budget_spent: bool
    inc: Trial | None = None


class Search:
    def __init__(self, judge: Judge, candidates: Iterable[Candidate], *, max_drop: float, objective: str = "latency",
                 budget_s: float = 900.0, finalists: int = FINALISTS, fallback_steps: tuple[int, ...] = FALLBACK_STEPS,
                 clock: Callable[[], float] = time.monotonic,
                 progress: Callable[[str], None] = lambda line: None) -> None:
        if objective not in OBJECTIVES:
            raise QuantbenchError(f"--objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if max_drop < 0:
            raise QuantbenchError(f"--max-drop must be >= 0 points, got {max_drop}")
        self.judge, self.max_drop, self.objective = judge, max_drop, objective
        self.trials = [Trial(c) for c in dict.fromkeys(candidates)]
        if not self.trials:
            raise QuantbenchError("no candidate recipe to tune: --methods named none this machine can run")
        self.budget_s, self.finalists, self.fallback_steps = budget_s, finalists, fallback_steps
        self.clock, self.progress = clock, progress
        self._start = clock()
        self.budget_spent = False

    # ------------------------------------------------------------------ helpers
    def _over_budget(self) -> bool:
        if not self.budget_spent and self.clock() - self._start > self.budget_s:
            self.budget_spent = True
            self.progress(f"time budget of {self.budget_s / 60:.0f} min spent: finishing with what is measured")
        return self.budget_spent

    def _key(self, trial: Trial) -> float:
        """Smaller is better: minus the speedup, or the bytes."""
        assert trial.measured is not None
        return -trial.measured.speedup if self.objective == "latency" else float(trial.measured.size_bytes)

    def _better(self, a: Trial, b: Trial) -> bool:
        return self._key(a) < self._key(b)

    def _measure(self, trial: Trial, number: int, total: int) -> None:
        try:
            trial.measured = self.judge.measure(trial.candidate)
            trial.status = "measured"
        except QuantbenchError as exc:
            trial.status, trial.why = "failed", str(exc)
        best = self._best_line()
        self.progress(f"candidate {number}/{total} {trial.candidate.label}: "
                      + (f"{trial.measured.speedup:.2f}x fp32, {trial.measured.size_bytes / 1e6:.1f} MB"
                         if trial.measured else f"failed ({trial.why})") + best)

    def _best_line(self) -> str:
        passing = [t for t in self.trials if t.status == "passed"]
        if not passing:
            return ""
        best = min(passing, key=self._key)
        return f"; best so far {best.candidate.label} ({self._objective_text(best)})"

    def _objective_text(self, trial: Trial) -> str:
        m = trial.measured
        return f"{m.speedup:.2f}x" if self.objective == "latency" else f"{m.size_bytes / 1e6:.1f} MB"

    def _score_tuning(self, trial: Trial) -> bool:
        trial.tuning = self.judge.score(trial.candidate, TUNING)
        passed = trial.tuning.drop_pts <= self.max_drop + 1e-9
        trial.status = "passed" if passed else "over"
        if not passed:
            trial.why = f"tuning drop {trial.tuning.drop_pts:.2f} pt > {self.max_drop:g}"
            self.judge.release(trial.candidate)
        self.progress(f"  {trial.candidate.label} on the tuning split: drop {trial.tuning.drop_pts:.2f} pt "
                      f"({'within' if passed else 'over'} {self.max_drop:g}){self._best_line()}")
        return passed

    # ------------------------------------------------------------------ the search
    def run(self) -> Outcome:
        total = len(self.trials)
        for number, trial in enumerate(self.trials, 1):
            if self._over_budget():
                trial.status, trial.why = "untried", "time budget spent before it was built"
                continue
            self._measure(trial, number, total)
        self._tuning_phase()
        self._fallback_phase()
        chosen, closest = self._test_phase()
        return Outcome(self.max_drop, self.objective, self.trials, chosen, closest, self.clock() - self._start,
                       self.budget_spent)

    def _ranked(self) -> list[Trial]:
        return sorted((t for t in self.trials if t.measured is not None and t.status == "measured"), key=self._key)

    def _tuning_phase(self) -> None:
        for trial in self._ranked():
            passing = sum(t.status == "passed" for t in self.trials)
            if passing >= self.finalists:
                trial.status = "pruned"
                trial.why = f"{self.finalists} better candidates already within the budget on the tuning split"
                self.judge.release(trial.candidate)
            elif passing and self._over_budget():  # with nothing passing yet, scoring goes on: an answer first
                trial.status, trial.why = "pruned", "time budget spent before it was scored"
            else:
                self._score_tuning(trial)

    def _fallback_phase(self) -> None:
        """Candidates that beat every passing one but lost too much, retried with their most sensitive Linears FP32."""
        over = sorted((t for t in self.trials if t.status == "over" and t.candidate.origin != "fallback"
                       and "float_layers" not in t.candidate.options), key=self._key)
        for trial in over:
            best = self._best_passing()
            if best is not None and not self._better(trial, best):
                continue  # already no better than a passing candidate: fallback only slows it further
            if self._over_budget():
                return
            try:
                layers = self.judge.sensitive_layers(trial.candidate)
            except QuantbenchError as exc:  # the method has no per-layer fallback
                trial.why += f"; no per-layer fallback ({exc})"
                continue
            for count in (k for k in self.fallback_steps if k <= len(layers)):
                if self._over_budget():
                    return
                fallback = Trial(trial.candidate.with_options(f"fallback of {trial.candidate.label}",
                                                              float_layers=tuple(layers[:count])))
                self.trials.append(fallback)
                self._measure(fallback, len(self.trials), len(self.trials))
                if fallback.measured is None:
                    break
                best = self._best_passing()
                if best is not None and not self._better(fallback, best):
                    fallback.status = "pruned"
                    fallback.why = f"no better than {best.candidate.label}, which passes: more FP32 layers only slow it"
                    self.judge.release(fallback.candidate)
                    break
                if self._score_tuning(fallback):
                    break

    def _best_passing(self) -> Trial | None:
        passing = [t for t in self.trials if t.status == "passed"]
        return min(passing, key=self._key) if passing else None

    def _test_phase(self) -> tuple[Trial | None, Trial | None]:
        passing = sorted((t for t in self.trials if t.status == "passed"), key=self._key)
        finalists, rest = passing[:self.finalists], passing[self.finalists:]
        for trial in rest:
            trial.status = "pruned"
            trial.why = f"{self.finalists} better candidates within the budget on the tuning split"
        for trial in finalists:
            trial.status = "finalist"
            trial.test = self.judge.score(trial.candidate, TEST)
            self.progress(f"finalist {trial.candidate.label} on the test split: drop {trial.test.drop_pts:.2f} pt "
                          f"(tuning split: {trial.tuning.drop_pts:.2f})")
        held = [t for t in finalists if t.test.drop_pts <= self.max_drop + 1e-9]
        if held:
            held[0].status = "chosen"
            return held[0], None
        closest = min(finalists, key=lambda t: t.test.drop_pts) if finalists else None
        return None, closest


def inc_pick(judge: Judge, trials: list[Trial], max_drop: float,
             order: Callable[[Candidate], float] | None = None) -> Trial | None:
    """Intel Neural Compressor's rule on the same candidates, for comparison only: in a fixed order (``order``, a
    sort key; default: the order tried), the first measured default-option candidate whose drop on the test split
    is within ``max_drop``. Pass only the trials INC would hold (quantization configs, not FP32 ones)."""
    fixed = [t for t in trials if t.measured is not None and t.candidate.origin == "default"]
    if order is not None:
        fixed.sort(key=lambda t: order(t.candidate))
    for trial in fixed:
        if trial.test is None:
            trial.test = judge.score(trial.candidate, TEST)
        if trial.test.drop_pts <= max_drop + 1e-9:
            return trial
    return None


def _short(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _jsonable(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
