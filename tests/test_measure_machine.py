"""The machine description saved with every run (quant_impl/measure/machine.py)."""

from __future__ import annotations

from quant_impl.measure.machine import ISA_FLAGS, machine_info


def test_machine_info_names_isa_and_versions() -> None:
    info = machine_info()
    assert {"avx512_vnni", "avx512_bf16", "amx_int8"} <= set(info["isa"])
    assert info["versions"]["torch"] and info["threads"] >= 1
    assert set(info["isa"]) == set(ISA_FLAGS)
