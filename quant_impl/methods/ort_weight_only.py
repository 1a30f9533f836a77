"""ONNX Runtime weight-only: ``ort-int8-weight``, ``ort-int4-weight`` and ``ort-int2-weight`` (MatMulNBits).

The graph is ort-fp32's export fused without the Attention fusion (so the Q, K and V projections stay MatMuls and
are compressed too), then ``onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`` replaces every
MatMul with a constant weight by a ``com.microsoft.MatMulNBits`` node: the weight in blocks of ``block_size`` input
features, ``bits`` bits each (ORT 1.32 accepts exactly 2, 4 and 8), a float scale per block (and a zero point when
asymmetric). The embedding tables, the pooler and the classifier (``Gemm`` nodes) stay fp32.

Whether MLAS runs a low-bit kernel or unpacks the weight to fp32 first depends on the bit width, on
``accuracy_level`` (0: fp32 activations, ``CompFp32``; 4: activations quantized to int8 per block, ``CompInt8``) and
on the CPU; read from MLAS's sources in 1.32 (``qnbitgemm.cpp``'s dispatch tables) and confirmed by timing on AMX
and AVX512-VNNI CPUs (8- and 2-bit at level 0 ran ~10x slower than fp32, the unpack-then-GEMM fallback):

- 4 bits: native at both levels (``SQ4BitGemm`` CompFp32 and CompInt8 kernels for AVX2, AVX512 and VNNI);
- 8 bits: native at level 4 only (``SQ8BitGemm`` CompInt8); at level 0 the weight is dequantized per call;
- 2 bits: native at level 4 on AVX512-VNNI CPUs only (the AVX2 build's ``Q2BitGemm`` entries are stubs).

Each build records which of these it is (``settings["kernel"]``) by the CPU MLAS really runs on (the detected ISA:
``QUANTBENCH_CPU_CLASS`` changes quantbench's own choices, not MLAS's dispatch).
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import Hardware
from quant_impl.methods._common import WEIGHT_ONLY_SECTION
from quant_impl.methods.kernels import Kernel
from quant_impl.methods.onnxruntime_engine import (
    _PEER, OrtPredictor, _check_export_fields, _engine_settings, _export_and_fuse, _quiet_quantizer_advice, _ship,
)
from quant_impl.methods.options import check_bool, check_choice, check_min
from quant_impl.methods.registry import QuantizedModel, register_method

BITS = (2, 4, 8)  # what MatMulNBitsQuantizer accepts in ORT 1.32
ACCURACY_LEVELS = (0, 1, 2, 3, 4)  # 0 = unset (fp32 compute), 1 fp32, 2 fp16, 3 bf16, 4 int8 activations
_SECTION = WEIGHT_ONLY_SECTION
_REQUIRES = ("onnx", "onnxruntime", "onnx_ir")  # the quantizer imports onnx_ir (PyPI onnx-ir)


@dataclass(frozen=True)
class OrtWeightOnlyConfig:
    bits: int = 4
    block_size: int = 32  # input features per scale; a power of two >= 16 (MLAS's block sizes)
    symmetric: bool = True  # no zero points: what MLAS's fastest CompInt8 paths take
    accuracy_level: int = 4  # 4: int8 activations per block (the native kernels for 8 and 2 bits need it)
    opset: int = 17
    attention: str = "eager"
    session_optimization: str = "all"
    spinning: bool = False
    version: int = 1
    FIXED_BITS: ClassVar[int] = 4

    def __post_init__(self) -> None:
        _check_export_fields(self)
        check_choice(self, "bits", BITS)
        check_choice(self, "accuracy_level", ACCURACY_LEVELS)
        check_bool(self, "symmetric")
        check_min(self, 16, "block_size")
        if self.block_size & (self.block_size - 1):
            raise ValueError(f"{type(self).__name__}.block_size must be a power of two >= 16, got {self.block_size}")
        if self.bits != self.FIXED_BITS:
            name = {8: "ort-int8-weight", 4: "ort-int4-weight", 2: "ort-int2-weight"}[self.bits]
            raise ValueError(f"this method is the {self.FIXED_BITS}-bit registration; for {self.bits} bits run "
                             f"--methods {name}")


@dataclass(frozen=True)
class OrtInt8WeightConfig(OrtWeightOnlyConfig):
    bits: int = 8
    FIXED_BITS: ClassVar[int] = 8


@dataclass(frozen=True)
class OrtInt2WeightConfig(OrtWeightOnlyConfig):
    bits: int = 2
    FIXED_BITS: ClassVar[int] = 2


def mlas_kernel(bits: int, accuracy_level: int, isa: dict[str, Any]) -> Kernel:
    """What MLAS runs for a ``bits``-bit MatMulNBits at ``accuracy_level`` on a CPU with flags ``isa``."""
    compute = "CompInt8" if accuracy_level == 4 else "CompFp32"
    name = f"MLAS MatMulNBits {bits}-bit {compute}"
    vnni = bool(isa.get("avx512_vnni") or isa.get("amx_int8"))
    if bits == 4 or (bits == 8 and accuracy_level == 4) or (bits == 2 and accuracy_level == 4 and vnni):
        return Kernel("native", name)
    why = ("no 2-bit kernel without AVX512-VNNI in MLAS" if bits == 2 and accuracy_level == 4
           else f"MLAS has no {bits}-bit kernel at accuracy_level {accuracy_level}")
    return Kernel("simulated", f"MLAS MatMulNBits {bits}-bit: weight unpacked to fp32, then an fp32 GEMM ({why})")


def _registration_kernel(bits: int) -> Any:
    def fact(hardware: Hardware) -> Kernel:
        from quant_impl.measure.machine import machine_info

        return mlas_kernel(bits, OrtWeightOnlyConfig.accuracy_level, machine_info()["isa"])

    return fact


def nbits_summary(model: Any) -> dict[str, Any]:
    """MatMulNBits nodes by their ``bits`` attribute, and the op types of what else is left."""
    bits: Counter[int] = Counter()
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            bits[next(a.i for a in node.attribute if a.name == "bits")] += 1
    ops = Counter(node.op_type for node in model.graph.node)
    return {"matmul_nbits_by_bits": dict(sorted(bits.items())), "matmul_left": ops.get("MatMul", 0),
            "gemm_left": ops.get("Gemm", 0)}


def _transform(name: str, baseline: Any, hardware: Hardware, config: OrtWeightOnlyConfig) -> QuantizedModel:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from quant_impl.measure.machine import machine_info

    predictor = OrtPredictor(config)
    fused, graph = _export_and_fuse(baseline, predictor, config, attention=False)
    source = onnx.load(str(fused))
    algo = DefaultWeightOnlyQuantConfig(block_size=config.block_size, is_symmetric=config.symmetric,
                                        accuracy_level=config.accuracy_level, bits=config.bits)
    # the quantizer rewrites the ModelProto it is given: hand it a copy so nothing else sees a half-rewritten graph
    quantizer = MatMulNBitsQuantizer(copy.deepcopy(source), bits=config.bits, block_size=config.block_size,
                                     is_symmetric=config.symmetric, accuracy_level=config.accuracy_level,
                                     algo_config=algo)
    with _quiet_quantizer_advice():
        quantizer.process()
    quantizer.model.save_model_to_file(str(predictor.model_path), use_external_data_format=False)
    size = _ship(predictor, [fused])
    summary = nbits_summary(onnx.load(str(predictor.model_path), load_external_data=False))
    if not summary["matmul_nbits_by_bits"]:
        raise QuantbenchError(f"{name}: MatMulNBitsQuantizer replaced no MatMul in the exported graph; the model's "
                              "Linear layers were not exported as MatMul with a constant weight")
    kernel = mlas_kernel(config.bits, config.accuracy_level, machine_info()["isa"])
    settings = {
        **_engine_settings(predictor),
        "weights": f"int{config.bits} {'symmetric' if config.symmetric else 'asymmetric'} per block of "
                   f"{config.block_size} input features (MatMulNBits); embeddings, pooler and classifier fp32",
        "activations": "int8 per block at run time (accuracy_level 4)" if config.accuracy_level == 4
                       else f"fp32 (accuracy_level {config.accuracy_level})",
        "quantizer": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer (RTN)",
        "quantized": summary,
        "kernel": kernel.as_dict(),
        **graph,
    }
    return QuantizedModel(name, hardware.id, predictor, size.bytes, size.note, settings)


def _register(name: str, config_cls: type, bits: int, threshold: float, min_sqnr_db: float, order: int) -> None:
    register_method(
        name, config_cls, **{**_PEER, **_SECTION, "requires": _REQUIRES}, threshold=threshold,
        min_sqnr_db=min_sqnr_db, precision="int8" if bits == 8 else f"int{bits}", order=order,
        summary=f"ONNX Runtime MatMulNBits {bits}-bit weight-only encoder MatMuls (block 32, symmetric, int8 "
                "activations per block: accuracy_level 4).",
        heading={"en": f"{name} (ONNX Runtime MatMulNBits, {bits}-bit)",
                 "zh": f"{name}（ONNX Runtime MatMulNBits，{bits} 位）"},
        kernel=_registration_kernel(bits), weight_bits=bits,
    )(lambda baseline, hardware, config: _transform(name, baseline, hardware, config))


# Logit SQNR bars: the tiny model measured 78.3 / 57.7 / 44.8 dB at 8 / 4 / 2 bits (higher than torchao's widths: the
# pooler, a Gemm here, stays fp32), each bar ~12 dB under.
_register("ort-int8-weight", OrtInt8WeightConfig, 8, threshold=1.0, min_sqnr_db=65.0, order=75)
_register("ort-int4-weight", OrtWeightOnlyConfig, 4, threshold=2.0, min_sqnr_db=45.0, order=76)
_register("ort-int2-weight", OrtInt2WeightConfig, 2, threshold=12.0, min_sqnr_db=33.0, order=77)
