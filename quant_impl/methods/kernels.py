"""What arithmetic a method's build really runs: ``native`` (a real kernel computes at the stated precision) or
``simulated`` (values stored at low precision, computed after converting them back), with one line naming the
kernel. Every registration carries one (``kernel=``); a build whose options or CPU change it records its own in
``settings["kernel"]``, and every saved cell carries the one that ran.

A speed-up of a simulated method measures the simulation (e.g. fp16 on a CPU without fp16 arithmetic converts to
fp32 for every matmul), never the precision's hardware; the report says so wherever it shows one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Union

from quant_impl.hardware import Hardware
from quant_impl.schema import KERNEL_KINDS as KINDS


@dataclass(frozen=True)
class Kernel:
    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kernel kind {self.kind!r} is not one of {KINDS}")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


KernelFact = Union[Kernel, Callable[[Hardware], Kernel]]


def kernel_on(fact: KernelFact, hardware: Hardware) -> Kernel:
    """The kernel a registration's fact names for ``hardware`` (a fact may depend on the device and the CPU)."""
    return fact(hardware) if callable(fact) else fact


def _isa() -> dict[str, Any]:
    from quant_impl.measure.machine import machine_info

    return machine_info()["isa"]


def has_fp16_math() -> bool:
    isa = _isa()
    return bool(isa.get("avx512_fp16") or isa.get("amx_fp16"))


def has_bf16_math() -> bool:
    isa = _isa()
    return bool(isa.get("avx512_bf16") or isa.get("amx_bf16"))


def half(dtype: str) -> Callable[[Hardware], Kernel]:
    """fp16/bf16 GEMMs: native on CUDA and on CPUs with the type's arithmetic, else emulated through fp32."""
    flags = "avx512_fp16/amx_fp16" if dtype == "fp16" else "avx512_bf16/amx_bf16"

    def fact(hardware: Hardware) -> Kernel:
        if hardware.device == "cuda":
            return Kernel("native", f"cuBLAS {dtype} GEMM")
        native = has_fp16_math() if dtype == "fp16" else has_bf16_math()
        if native:
            return Kernel("native", f"oneDNN {dtype} GEMM ({flags})")
        return Kernel("simulated", f"{dtype} storage, each GEMM converted to fp32 (this CPU has no {flags})")

    return fact
