"""The machine description saved with every run (quant_impl/measure/machine.py)."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings

import pytest

from quant_impl.measure.contention import OtherLoad, contention_warning
from quant_impl.errors import QuantbenchError
from quant_impl.measure.cpu_class import CPU_CLASSES, at_most, cpu_class
from quant_impl.measure.latency import percentiles
from quant_impl.measure.machine import (FORCE_CPU_CLASS_ENV, ISA_FLAGS, detected_cpu_class, effective_cpu_class,
                                        has_int8_dot_product, machine_info)


def test_machine_info_names_isa_and_versions() -> None:
    info = machine_info()
    assert {"avx512_vnni", "avx512_bf16", "amx_int8"} <= set(info["isa"])
    assert info["versions"]["torch"] and info["threads"] >= 1
    assert set(info["isa"]) == set(ISA_FLAGS)


def test_machine_info_records_the_class_of_its_own_flags() -> None:
    info = machine_info()
    assert info["cpu_class"] == cpu_class(info["isa"]) and info["cpu_class"] in CPU_CLASSES


@pytest.mark.parametrize("flags, expected", [
    ({"avx2"}, "avx2"),
    ({"avx2", "avx_vnni"}, "avx2-vnni"),  # Alder Lake and later laptops: VNNI without AVX-512
    ({"avx2", "avx512f", "avx512bw"}, "avx512"),  # Skylake-SP: AVX-512 without int8 dot products
    ({"avx2", "avx512f", "avx512_vnni"}, "avx512-vnni"),
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni"}, "avx512-bf16"),  # the Zen 4 EPYC VMs here
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "amx_tile"}, "amx"),
    ({"sse4_2"}, "pre-avx2"),
])
def test_cpu_class_from_flags(flags: set[str], expected: str) -> None:
    assert cpu_class({flag: flag in flags for flag in (*ISA_FLAGS, "sse4_2")}) == expected


def test_cpu_class_is_unknown_without_flags() -> None:
    assert cpu_class({}) is None and cpu_class(None) is None and cpu_class({f: False for f in ISA_FLAGS}) is None


def test_percentiles_are_measured_times_and_need_enough_calls() -> None:
    times = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    tails = percentiles(times)
    assert tails["latency_p90_s"] == 0.090 and tails["latency_p99_s"] == 0.099 and tails["latency_p50_s"] == 0.0505
    few = percentiles(times[:99])
    assert few["latency_p99_s"] is None and few["latency_p90_s"] == 0.090  # 99 calls: the p99 would be the maximum
    assert percentiles(times[:9])["latency_p90_s"] is None


def test_other_load_sees_a_busy_child_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.5)
        with OtherLoad() as load:
            time.sleep(1.0)
    finally:
        child.wait()
    if load.cores is None:
        pytest.skip("/proc/stat is not readable here")
    assert load.cores > 0.5  # one core spinning
    assert contention_warning(load.cores) and contention_warning(0.0) is None


def test_the_forced_class_only_takes_instructions_away() -> None:
    assert at_most("avx512-bf16", None) == "avx512-bf16"
    assert at_most("avx512-bf16", "avx2") == "avx2" and at_most("avx2", "avx2") == "avx2"
    with pytest.raises(ValueError, match="cannot run as avx512-vnni"):
        at_most("avx2", "avx512-vnni")
    with pytest.raises(ValueError, match="not a CPU class"):
        at_most("avx2", "avx3")


def test_a_bad_forced_class_is_one_line_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv(FORCE_CPU_CLASS_ENV, "avx3")
    with pytest.raises(QuantbenchError, match=r"^QUANTBENCH_CPU_CLASS=avx3: 'avx3' is not a CPU class; choose one of"):
        effective_cpu_class()
    monkeypatch.setenv(FORCE_CPU_CLASS_ENV, "pre-avx2")
    assert effective_cpu_class() == "pre-avx2" and not has_int8_dot_product()
    with warnings.catch_warnings():  # torch chose its kernels before the switch (test_forced_cpu_class says so)
        warnings.simplefilter("ignore")
        info = machine_info()
    assert info["forced_cpu_class"] == "pre-avx2" and info["cpu_class"] == detected_cpu_class()
