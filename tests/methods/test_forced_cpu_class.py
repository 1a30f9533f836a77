"""QUANTBENCH_CPU_CLASS reaches the libraries' kernels, not only quantbench's choices: a process started with it runs
the older class's ATen and oneDNN code paths, so the AVX2-only arithmetic (16-bit sums of u8 x s8 pairs, which
saturate) and the fallback that avoids it are tested on AVX-512 VMs too. Each check runs in a fresh process: the
libraries read their caps once, at their first kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from quant_impl.measure.cpu_class import CPU_CLASSES, FORCE_CPU_CLASS_ENV, LIBRARY_CAPS, cap_libraries
from quant_impl.measure.machine import detected_cpu_class, machine_info


def _can_force(forced: str) -> None:
    detected = detected_cpu_class()
    if detected is None or CPU_CLASSES.index(forced) < CPU_CLASSES.index(detected):
        pytest.skip(f"this {detected} CPU cannot run as {forced}")


def _child(script: str, forced: str, tmp_path: Path, **extra_env: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {name for caps in LIBRARY_CAPS.values() for name in caps}}
    env.update({FORCE_CPU_CLASS_ENV: forced, **extra_env})
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_caps_fill_only_what_the_user_left_unset() -> None:
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"}
    assert cap_libraries(env, "avx2") == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2_VNNI",
                                          "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    for nothing in (None, "", "amx", "avx3"):  # no switch, no cap needed, or an error raised where the class is read
        untouched: dict[str, str] = {}
        assert cap_libraries(untouched, nothing) == {} and untouched == {}
    assert set(LIBRARY_CAPS) == set(CPU_CLASSES)


def test_a_forced_process_runs_the_older_class_kernels(tmp_path: Path) -> None:
    _can_force("avx2")
    seen = _child("""
        import json, quant_impl, torch
        from quant_impl.measure.machine import machine_info
        from quant_impl.measure.profile import torch_kernels
        linear = torch.nn.Linear(64, 64)
        run = lambda x, _mask: torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, "none", [], "")
        with torch.no_grad():
            kernels = torch_kernels(run, (torch.randn(8, 64), None))
        info = machine_info()
        print(json.dumps({"aten": torch.backends.cpu.get_cpu_capability(), "caps": info["library_caps"],
                          "forced": info["forced_cpu_class"], "kernels": kernels}))
    """, "avx2", tmp_path)
    kernels = seen.pop("kernels")
    assert seen == {"aten": "AVX2", "caps": LIBRARY_CAPS["avx2"], "forced": "avx2"}
    assert kernels and all("avx2" in name and "avx512" not in name for name in kernels), kernels


def test_the_forced_avx2_path_saturates_full_range_int8_and_the_fallback_avoids_it(tmp_path: Path) -> None:
    """On AVX2 (no VNNI) oneDNN sums u8 x s8 pairs in 16 bits: full-range activations lose the logits, 7-bit ones
    (``activation_range="auto"`` there) keep them. Measured first on a real AVX2-only EPYC (8.7 vs 38.6 dB); here
    on whatever CPU runs the suite, forced to avx2."""
    _can_force("avx2")
    sqnr = _child("""
        import json, sys, torch
        from pathlib import Path
        from transformers import MPNetConfig, MPNetForSequenceClassification
        from quant_impl.config import RunConfig
        from quant_impl.hardware import get_hardware
        from quant_impl.methods import apply
        from quant_impl.methods.dynamic_int8 import DynamicInt8Config
        from quant_impl.models import load_tokenizer
        from quant_impl.qmath import sqnr_db
        from quant_impl.session.store import BenchSession
        folder = Path(sys.argv[1]) / "mpnet"
        torch.manual_seed(0)
        MPNetForSequenceClassification(MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=64,
                                                   num_labels=2)).save_pretrained(folder)
        load_tokenizer("tiny").save_pretrained(folder)
        cfg = RunConfig.load("smoke", {"model": str(folder), "cache_dir": str(Path(sys.argv[1]) / "cache")})
        base = BenchSession(cfg).baseline
        rows = base.data["test"][:16]
        batch = rows["input_ids"], rows["attention_mask"]
        with torch.no_grad():
            reference = base.model(input_ids=batch[0], attention_mask=batch[1]).logits
        out = {}
        for span in ("full", "auto"):
            built = apply("dynamic-int8", base, get_hardware("cpu"), DynamicInt8Config(activation_range=span,
                                                                                       attention="sdpa"))
            out[span] = [sqnr_db(reference, built(*batch).float()), built.settings["activation_range"]]
        print(json.dumps(out))
    """, "avx2", tmp_path)
    assert sqnr["auto"][1] == "reduced"
    assert sqnr["full"][0] < 15.0, f"full-range int8 did not saturate under the forced AVX2 kernels: {sqnr}"
    assert sqnr["auto"][0] >= 30.0, f"the 7-bit fallback lost the logits under the forced AVX2 kernels: {sqnr}"


def test_a_switch_set_after_torch_chose_its_kernels_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process torch chose its kernels long ago: the run records the caps it asked for and warns that
    they did not take."""
    _can_force("pre-avx2")
    if detected_cpu_class() == "pre-avx2":
        pytest.skip("this CPU is pre-avx2 already: torch's kernels are that class's")
    monkeypatch.setenv(FORCE_CPU_CLASS_ENV, "pre-avx2")
    for name in LIBRARY_CAPS["pre-avx2"]:
        monkeypatch.delenv(name, raising=False)
    with pytest.warns(UserWarning, match="QUANTBENCH_CPU_CLASS=pre-avx2 came after torch chose its AVX.* kernels"):
        info = machine_info()
    assert info["library_caps"] == LIBRARY_CAPS["pre-avx2"]
    assert "ATEN_CPU_CAPABILITY" not in os.environ  # recording the caps never changes this process's environment
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.delenv(FORCE_CPU_CLASS_ENV)
        assert machine_info()["library_caps"] is None
