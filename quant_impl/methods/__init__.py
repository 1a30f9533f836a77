"""Quantization methods, one module each, registered by stable name (see ``registry``).

Example:
    >>> from quant_impl.methods import apply, method_names
    >>> from quant_impl.hardware import get_hardware
    >>> built = apply("dynamic-int8", baseline, get_hardware("cpu"))   # doctest: +SKIP
    >>> built(input_ids, attention_mask).shape                         # doctest: +SKIP
    torch.Size([32, 2])
"""

from quant_impl.methods.registry import (
    MethodSpec, QuantizedModel, apply, get_method, make_config, method_names, register_method,
)

# Importing a method module registers it; the order here is the order reports list them in.
from quant_impl.methods import fp32, half, dynamic_int8, static_int8, qat_int8, int4_weight_only, mixed  # noqa: E402,F401  isort: skip

__all__ = ["MethodSpec", "QuantizedModel", "apply", "get_method", "make_config", "method_names", "register_method"]
