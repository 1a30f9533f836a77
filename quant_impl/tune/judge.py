"""The judge of a real search: candidates built from the session's baseline, timed against FP32 in interleaved
pairs, scored on the tuning split (the calibration split: held out from training, never the test split) or on the
test split, and ranked per layer by quant_impl.methods.sensitivity for the fallback."""

from __future__ import annotations

import gc
import json
from pathlib import Path

from quant_impl.cache import cache_key, entry_lock, source_fingerprint, trusted, write_json_atomic, write_manifest
from quant_impl.data import data_identity
from quant_impl.errors import QuantbenchError
from quant_impl.hardware import Hardware
from quant_impl.measure.accuracy import EvalResult
from quant_impl.measure.latency import interleaved_latency
from quant_impl.measure.stats import mcnemar_exact
from quant_impl.methods import QuantizedModel, apply, get_method, make_config
from quant_impl.schema import REFERENCE
from quant_impl.session.store import BenchSession, primary_drop_interval
from quant_impl.tune.search import TEST, TUNING, Candidate, Measured, Score

# The tuning split: held out from training like the test split, and labelled. Static methods calibrate their ranges
# on its first 320 rows; their accuracy there is judged by the same labels as any other candidate's.
TUNING_SPLIT = "calibration"
SPLITS = {TUNING: TUNING_SPLIT, TEST: "test"}
# The per-layer ranking: torch.ao dynamic int8 one Linear at a time on 2 x 32 calibration rows (mixed-int8-bf16's).
SENSITIVITY_BATCHES, SENSITIVITY_BATCH_SIZE = 2, 32


class SessionJudge:
    def __init__(self, session: BenchSession, hardware: Hardware, batch_size: int, seq_len: int, rounds: int) -> None:
        self.session, self.hardware, self.rounds = session, hardware, rounds
        self.inputs = session.batch(batch_size, seq_len)
        self.reference = session.built(REFERENCE, hardware)
        self._built: dict[Candidate, QuantizedModel] = {}
        self._ranking: list[str] | None = None
        self._reference_evals: dict[str, EvalResult] = {}

    def _build(self, candidate: Candidate) -> QuantizedModel:
        if candidate.method == REFERENCE and not candidate.options:
            return self.reference
        if candidate not in self._built:
            config = make_config(candidate.method, candidate.options)
            self._built[candidate] = apply(candidate.method, self.session.baseline, self.hardware, config)
        return self._built[candidate]

    def measure(self, candidate: Candidate) -> Measured:
        built = self._build(candidate)
        self.hardware.activate()
        timed = interleaved_latency({"reference": self.reference.predict, "candidate": built.predict}, self.inputs,
                                    rounds=self.rounds)
        kernel = built.settings.get("kernel") or {}
        return Measured(timed["candidate"].median_s, timed["reference"].median_s, built.size_bytes,
                        built.build_seconds, f"{kernel.get('kind', '?')}: {kernel.get('name', '?')}")

    def _reference_eval(self, split: str) -> EvalResult:
        if split not in self._reference_evals:
            if split == "test":
                self._reference_evals[split] = self.session.evaluation(REFERENCE, self.hardware)
            else:
                self._reference_evals[split] = self.session.evaluate_built(self.reference, split)[0]
        return self._reference_evals[split]

    def score(self, candidate: Candidate, split: str) -> Score:
        data_split = SPLITS[split]
        reference = self._reference_eval(data_split)
        if candidate.method == REFERENCE and not candidate.options:
            result = reference
        else:
            result = self.session.evaluate_built(self._build(candidate), data_split)[0]
        value, reference_value = self.session.primary(result, data_split), self.session.primary(reference, data_split)
        drop = 100 * (reference_value - value)
        if split == TUNING:
            return Score(split, result.examples, value, drop)
        labels = self.session.labels(data_split)
        task = self.session.baseline.task
        lo, hi = primary_drop_interval(task, reference, result, labels, self.session.cfg.seed)
        return Score(split, result.examples, value, drop, (lo, hi),
                     mcnemar_exact(reference.predictions, result.predictions, labels))

    def sensitive_layers(self, candidate: Candidate) -> list[str]:
        if not get_method(candidate.method).takes_float_layers:
            raise QuantbenchError(f"{candidate.method} cannot keep single Linears in FP32")
        if self._ranking is None:
            self._ranking = self._cached_ranking()
        return self._ranking

    def _cached_ranking(self) -> list[str]:
        """The encoder Linears, most sensitive first; cached by the checkpoint, the calibration split and the code."""
        from quant_impl.methods import mixed, sensitivity
        from quant_impl.methods._common import calibration_batches, fp32_copy

        baseline = self.session.baseline
        key = cache_key({"checkpoint": baseline.checkpoint.name, "calibration": data_identity(baseline.config),
                         "batches": [SENSITIVITY_BATCHES, SENSITIVITY_BATCH_SIZE],
                         "code": source_fingerprint([Path(sensitivity.__file__), Path(mixed.__file__)])})
        path = self.session.cfg.cache_dir / "tune" / f"sensitivity-{key}.json"
        with entry_lock(path):
            cached, ok = trusted(path, lambda p: list(json.loads(p.read_text(encoding="utf-8"))["ranked"]))
            if ok:
                return cached
            feed = list(calibration_batches(baseline, SENSITIVITY_BATCH_SIZE, SENSITIVITY_BATCHES))
            ranked = sensitivity.layer_sensitivity(fp32_copy(baseline), feed, mixed.dynamic_int8_linear)
            names = [layer.name for layer in ranked]
            write_json_atomic(path, {"ranked": names, "layers": [layer.to_dict() for layer in ranked]})
            write_manifest(path)
        return names

    def release(self, candidate: Candidate) -> None:
        if self._built.pop(candidate, None) is not None:
            gc.collect()
