"""The machine a run was timed on, saved with it: CPU model, the ISA flags that decide int8/bf16/fp16 speed,
library versions, threads and GPU. Library versions also enter the cache keys (quant_impl.cache_keys)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

from quant_impl.errors import QuantbenchError
from quant_impl.measure.cpu_class import FORCE_CPU_CLASS_ENV, INT8_DOT_CLASSES, at_most, cap_libraries, cpu_class

ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16",
             "amx_int8", "amx_tile")


def _cpu_flags() -> tuple[str, set[str]]:
    model, flags = platform.processor(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return model, flags


def detected_cpu_class() -> str | None:
    """This machine's CPU class from its flags (None where /proc/cpuinfo is not readable)."""
    _, flags = _cpu_flags()
    return cpu_class({flag: flag in flags for flag in ISA_FLAGS}) if flags else None


def effective_cpu_class() -> str | None:
    """The class quantbench's ISA-dependent choices follow: the detected one, or ``QUANTBENCH_CPU_CLASS``."""
    try:
        return at_most(detected_cpu_class(), os.environ.get(FORCE_CPU_CLASS_ENV) or None)
    except ValueError as error:
        raise QuantbenchError(f"{FORCE_CPU_CLASS_ENV}={os.environ[FORCE_CPU_CLASS_ENV]}: {error}") from None


def has_int8_dot_product() -> bool:
    """Whether int8 GEMMs here run on VNNI/AMX dot products (full-range uint8 activations are exact) or on 16-bit
    sums that saturate (activations must be 7-bit). Unknown CPUs get the safe answer."""
    return effective_cpu_class() in INT8_DOT_CLASSES


def library_caps_missed(caps: dict[str, str], capability: str) -> str | None:
    """Why torch did not take the forced class's ATen cap (it chose its kernels before the switch was set), or
    None when it did."""
    wanted = caps.get("ATEN_CPU_CAPABILITY")
    if not wanted or wanted.lower() == capability.lower():
        return None
    return (f"{FORCE_CPU_CLASS_ENV}={os.environ.get(FORCE_CPU_CLASS_ENV)} came after torch chose its {capability} "
            f"kernels, so they are not {wanted}'s: set it in the environment before Python starts")


def machine_versions() -> dict[str, str | None]:
    """Versions of the libraries that decide what a method computes and how fast."""
    versions: dict[str, str | None] = {}
    packages = ("torch", "transformers", "torchao", "datasets", "pytest-benchmark", "onnx", "onnxruntime", "openvino",
                "nncf")
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def machine_info() -> dict[str, Any]:
    """CPU model, ISA flags that decide int8/bf16/fp16 speed, library versions, threads and GPU."""
    model, flags = _cpu_flags()
    versions = machine_versions()
    isa = {flag: flag in flags for flag in ISA_FLAGS}
    forced = os.environ.get(FORCE_CPU_CLASS_ENV) or None
    caps = cap_libraries(dict(os.environ), forced)  # what is in effect; the environment is set at import only
    capability = torch.backends.cpu.get_cpu_capability()
    late = library_caps_missed(caps, capability)
    if late:
        warnings.warn(late, stacklevel=2)
    return {
        "cpu_model": model,
        "isa": isa,
        "cpu_class": cpu_class(isa) if flags else None,
        # Set when QUANTBENCH_CPU_CLASS made quantbench choose as on an older CPU: the timings are this CPU's.
        "forced_cpu_class": forced,
        # The kernel caps the forced class put on torch, oneDNN and fbgemm (ONNX Runtime has none): an emulation of
        # the older CPU's kernel choice and arithmetic, not of its speed.
        "library_caps": caps or None,
        "torch_cpu_capability": capability,
        "versions": versions,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
