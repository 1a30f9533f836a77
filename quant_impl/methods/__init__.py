"""Quantization methods, one module each, registered by stable name (see ``registry``).

Example:
    >>> from quant_impl.methods import apply, method_names
    >>> from quant_impl.hardware import get_hardware
    >>> built = apply("dynamic-int8", baseline, get_hardware("cpu"))   # doctest: +SKIP
    >>> built(input_ids, attention_mask).shape                         # doctest: +SKIP
    torch.Size([32, 2])
"""

import importlib
import pkgutil

from quant_impl.methods.registry import (
    SECTIONS, MethodSpec, QuantizedModel, apply, cache_kinds, get_method, make_config, method_names, register_method,
    speed_methods, main_job_methods,
)

# Importing a method module registers it: every public module here is imported, so a new method is one new file.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SECTIONS", "MethodSpec", "QuantizedModel", "apply", "cache_kinds", "get_method", "make_config", "method_names",
           "register_method", "speed_methods", "main_job_methods"]
