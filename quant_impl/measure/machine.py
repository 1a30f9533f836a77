"""The machine a run was timed on, saved with it: CPU model, the ISA flags that decide int8/bf16/fp16 speed,
library versions, threads and GPU. Library versions also enter the cache keys (quant_impl.cache_keys)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import torch

ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16",
             "amx_int8", "amx_tile")


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
    flags: set[str] = set()
    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    versions = machine_versions()
    return {
        "cpu_model": model,
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "versions": versions,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
