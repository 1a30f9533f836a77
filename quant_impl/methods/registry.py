"""The method registry: stable name -> (config class, transform). ``get_method`` is the only lookup.

Adding a method means one module in ``quant_impl/methods/`` that decorates its transform with
``@register_method("name", ConfigClass, ...)`` plus one test file; nothing else changes (modules are discovered,
and the registration carries the threshold, test bound, report section -- a new one with its heading per
language --, its own subsection heading, its cache kind, whether ``quantbench speed`` runs it by default and the
seed's expectation; all of it is saved with every run).

Example:
    >>> @register_method("my-int8", MyInt8Config, devices=("cpu",), threshold=1.0, min_sqnr_db=20.0,
    ...                  section="4.5", precision="int8", order=65, kernel=Kernel("native", "onednn qlinear u8s8"))
    ... def _my_int8_transform(baseline, hardware, config): ...
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from quant_impl.errors import QuantbenchError
from quant_impl.hardware import Hardware
from quant_impl.schema import PRECISIONS, SECTIONS

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class QuantizedModel:
    """A model a method built: how to run a batch, what it costs to ship, and how it was built.

    ``predict(input_ids, attention_mask) -> logits`` runs on ``hardware``; ``size_bytes`` is the length of the
    serialized tensors a deployment needs (``size_note`` says what was counted); ``settings`` go into the
    benchmark's extra_info; ``build_seconds`` is everything before the first timed call, compiling included.
    """

    method: str
    hardware: str
    predict: Predict
    size_bytes: int
    size_note: str
    settings: dict[str, Any]
    build_seconds: float = 0.0
    module: torch.nn.Module | None = field(default=None, repr=False)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.predict(input_ids, attention_mask)


# The report's sections (chapter 4) and the precisions are facts of the saved schema (quant_impl.schema); a method
# names its section, so the report needs no list of methods.


@dataclass(frozen=True)
class MethodSpec:
    """Everything known about a method, carried by its registration (and saved with every run, see ``metadata``).

    ``threshold``: the largest accuracy drop vs FP32 in points (the CI gate; pyproject may override it);
    ``min_sqnr_db``: the logit SQNR vs FP32 its tiny-model test must reach; ``section``: the report section;
    ``precision``: what the weights are (``int8`` methods are compared across engines); ``engine``: ``torch``
    or the peer runtime; ``seed``: the course-design report's expectation for it, if it gives one;
    ``requires``: importable modules it needs, from the pip ``extra`` named; ``section_title``: the heading
    per language of a section that is not one of chapter 4's own (``{"en": ..., "zh": ...}``); ``heading``: the
    method's own subsection heading per language (default: its name); ``cache_kind``: ``(name, what one entry
    is)`` of the cache subfolder it keeps (``quantbench cache`` lists and clears it); ``speed_default``: whether
    ``quantbench speed`` times it when no ``--methods`` are given; ``main_job``: whether it is one of the recipes the
    main job (``tox -e bench``, ``--quant-methods main``) benchmarks and CI's accuracy gates hold (the rest: ``tox -e
    bench-full`` and ``tox -e gates``); ``kernel``: whether its arithmetic is native or
    simulated and which kernel runs it (quant_impl.methods.kernels), per hardware; ``needs_labels``: why the method needs a
    classification head and labelled data (it then skips on embedding tasks), None when it needs neither;
    ``tunable``: option sets besides the defaults that ``quantbench tune`` tries (each a dict of config fields); a
    config with ``float_layers`` is also searched with its most sensitive Linears kept in FP32; ``weight_bits``: the
    bit width of a weight-only method's compressed Linear weights (activations stay floating point): the methods
    that set it make the report's bits curve, and they are not int8 methods of the engine comparison.
    """

    name: str
    config_cls: type
    transform: Callable[..., QuantizedModel]
    devices: tuple[str, ...]
    unsupported_reason: str
    summary: str
    threshold: float | None = None
    min_sqnr_db: float = 20.0
    section: str = "4.5"
    precision: str = "fp32"
    engine: str = "torch"
    seed: dict[str, Any] | None = None
    requires: tuple[str, ...] = ()
    extra: str | None = None
    order: int = 100
    section_title: dict[str, str] | None = None
    heading: dict[str, str] | None = None
    cache_kind: tuple[str, str] | None = None
    speed_default: bool = False
    main_job: bool = False
    needs_labels: str | None = None
    kernel: Any = None  # quant_impl.methods.kernels.KernelFact: a Kernel, or hardware -> Kernel
    tunable: tuple[dict[str, Any], ...] = ()
    recipe: dict[str, Any] | None = None  # set on a saved `quantbench tune` recipe: what it is and where it was tuned
    weight_bits: int | None = None

    @property
    def takes_float_layers(self) -> bool:
        """Whether its config can keep named Linears in FP32 (the per-layer fallback of ``quantbench tune``)."""
        return any(f.name == "float_layers" for f in dataclasses.fields(self.config_cls))

    def kernel_on(self, hardware: Hardware) -> Any:
        """The Kernel (native or simulated, and its name) this method runs on ``hardware`` by default."""
        from quant_impl.methods.kernels import kernel_on

        return kernel_on(self.kernel, hardware)

    def supports(self, hardware: Hardware, task_kind: str = "classification") -> str | None:
        """None when the method runs on ``hardware`` for a task of ``task_kind``, else why not (the benchmark's
        skip reason)."""
        missing = self.missing_packages()
        if missing:
            install = f"pip install 'quantbench[{self.extra}]'" if self.extra else f"pip install {' '.join(missing)}"
            extra = f" (the {self.extra!r} extra)" if self.extra else ""
            return f"{self.name} needs {', '.join(missing)}{extra}, which is not installed: {install}"
        if hardware.device not in self.devices:
            return f"{self.name} does not run on {hardware.device}: {self.unsupported_reason}"
        if task_kind == "embedding" and self.needs_labels:
            return f"{self.name} does not apply to an embedding model (no head, no labels): {self.needs_labels}"
        return hardware.available()

    def sqnr_bar(self, settings: dict[str, Any]) -> float:
        """The logit SQNR a build with these ``settings`` must reach: ``min_sqnr_db``, less 6.02 dB (one bit of
        quantization noise) where the int8 activations were 7-bit (``activation_range`` reduced, on CPUs without
        int8 dot products)."""
        return self.min_sqnr_db - (REDUCED_RANGE_DB if settings.get("activation_range") == "reduced" else 0.0)

    def missing_packages(self) -> list[str]:
        return [module for module in self.requires if importlib.util.find_spec(module) is None]

    def metadata(self, threshold: float | None = None) -> dict[str, Any]:
        """JSON for the saved run: the rules and facts the report and the gate read back (never today's code)."""
        return {
            "summary": self.summary,
            "devices": list(self.devices),
            "threshold": self.threshold if threshold is None else threshold,
            "min_sqnr_db": self.min_sqnr_db,
            "section": self.section,
            "precision": self.precision,
            "engine": self.engine,
            "seed": self.seed,
            "order": self.order,
            "section_title": self.section_title,
            "heading": self.heading,
            "needs_labels": self.needs_labels,
            "kernel": self._cpu_kernel(),
            "recipe": self.recipe,
            "weight_bits": self.weight_bits,
        }

    def _cpu_kernel(self) -> dict[str, str] | None:
        """The kernel fact on this machine's CPU (a CUDA-only method's on CUDA), for the saved registration."""
        from quant_impl.hardware import get_hardware

        return self.kernel_on(get_hardware("cpu" if "cpu" in self.devices else "cuda")).as_dict()


# 20 log10(2): the SQNR one bit fewer of a uniform quantizer's levels costs.
REDUCED_RANGE_DB = 6.02
_REGISTRY: dict[str, MethodSpec] = {}


def register_method(
    name: str,
    config_cls: type,
    devices: tuple[str, ...] = ("cpu",),
    unsupported_reason: str = "",
    summary: str = "",
    *,
    threshold: float | None,
    min_sqnr_db: float,
    section: str,
    precision: str,
    order: int,
    engine: str = "torch",
    seed: dict[str, Any] | None = None,
    requires: tuple[str, ...] = (),
    extra: str | None = None,
    section_title: dict[str, str] | None = None,
    heading: dict[str, str] | None = None,
    cache_kind: tuple[str, str] | None = None,
    speed_default: bool = False,
    main_job: bool = False,
    needs_labels: str | None = None,
    kernel: Any,
    tunable: tuple[dict[str, Any], ...] = (),
    weight_bits: int | None = None,
) -> Callable[[Callable[..., QuantizedModel]], Callable[..., QuantizedModel]]:
    """Register ``transform(baseline, hardware, config) -> QuantizedModel`` under ``name``, with what is known
    about the method (see :class:`MethodSpec`). ``threshold`` is None only for the FP32 reference."""
    builtin = [number for number, _key in SECTIONS]
    if section not in builtin and not (section_title or {}).get("en"):
        raise ValueError(f"method {name!r}: section {section!r} is not one of {builtin}; a section of its own needs "
                         "section_title={'en': ..., 'zh': ...} (its heading per language)")
    if section in builtin and section_title:
        raise ValueError(f"method {name!r}: section {section} is chapter 4's own; its heading is the templates'")
    if precision not in PRECISIONS:
        raise ValueError(f"method {name!r}: precision {precision!r} is not one of {PRECISIONS}")

    def decorate(transform: Callable[..., QuantizedModel]) -> Callable[..., QuantizedModel]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        doc = summary or (transform.__doc__ or "").strip().splitlines()[0]
        reason = unsupported_reason or f"it is implemented for {', '.join(devices)} only"
        _REGISTRY[name] = MethodSpec(
            name, config_cls, transform, devices, reason, doc, threshold=threshold, min_sqnr_db=min_sqnr_db,
            section=section, precision=precision, engine=engine, seed=seed, requires=requires, extra=extra,
            order=order, section_title=section_title, heading=heading, cache_kind=cache_kind,
            speed_default=speed_default, main_job=main_job, needs_labels=needs_labels, kernel=kernel, tunable=tuple(tunable),
            weight_bits=weight_bits,
        )
        return transform

    return decorate


def get_method(name: str) -> MethodSpec:
    """The registered method called ``name`` (or a recipe saved by ``quantbench tune``, or a variant such as
    ``dynamic-int8[quantize_lowering=torch]``, each registered on first use); an unknown name lists close matches
    and all names."""
    if name not in _REGISTRY:
        from quant_impl.tune.recipes import register_saved_recipe

        if (variant := VARIANT.match(name)) is not None:
            register_variant(name, variant["method"], variant["options"])
        else:
            register_saved_recipe(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise QuantbenchError(
            f"method {name!r} is not registered.{hint} Registered methods: "
            f"{', '.join(sorted(n for n, spec in _REGISTRY.items() if not (spec.recipe or {}).get('variant')))}"
        ) from None


def register_recipe(name: str, method: str, options: dict[str, Any], recipe: dict[str, Any]) -> MethodSpec:
    """Register ``name`` as ``method`` with ``options`` as its defaults: a saved ``quantbench tune`` recipe runs in
    ``pytest bench``, ``quantbench speed`` and the gate like any method, its registration carrying ``recipe``."""
    base = get_method(method)
    if base.recipe is not None:
        raise QuantbenchError(f"recipe {name!r} names {method!r}, itself a recipe; name a registered method")
    make_config(method, options)  # an unknown key or a bad value stops here, naming the method
    fields = [(f.name, f.type, dataclasses.field(default=options[f.name]))
              for f in dataclasses.fields(base.config_cls) if f.name in options]
    config_cls = dataclasses.make_dataclass(f"{base.config_cls.__name__}Recipe", fields, bases=(base.config_cls,),
                                            frozen=True)
    spec = dataclasses.replace(base, name=name, config_cls=config_cls, summary=f"recipe: {recipe.get('describe', method)}",
                               speed_default=False, main_job=False, tunable=(), recipe={"method": method, "options": options, **recipe})
    _REGISTRY[name] = spec
    return spec


# A method with its options in brackets, separated by ';' or ',' (as `quantbench tune` labels its candidates)
VARIANT = re.compile(r"^(?P<method>[a-z0-9][a-z0-9-]*)\[(?P<options>[^\[\]]*)\]$")


def register_variant(name: str, method: str, options_text: str) -> MethodSpec:
    """Register ``name`` = ``method[key=value;...]`` as a recipe of ``method`` with those options (values read as
    TOML scalars: ``true``, ``3``, ``1e-5``; anything else a string), so two settings of one method can be timed
    side by side, interleaved: ``quantbench speed --methods "dynamic-int8,dynamic-int8[quantize_lowering=torch]"``."""
    from quant_impl.config import option_value

    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in re.split(r"[;,]", options_text))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise QuantbenchError(f"method {name!r}: the options in brackets must look like key=value;key=value, e.g. "
                                  f"{method}[attention=sdpa]")
        options[key.strip()] = option_value(raw)
    if not options:
        raise QuantbenchError(f"method {name!r}: no options in the brackets; name {method} alone for its defaults")
    described = ", ".join(f"{key}={value}" for key, value in options.items())
    return register_recipe(name, method, options, {"describe": f"{method} with {described}", "variant": True})


def method_names() -> list[str]:
    """Every registered method in the registration's ``order`` (the report's order; ties by name); saved recipes are
    run by name only, never as part of "every method"."""
    return sorted((name for name, spec in _REGISTRY.items() if spec.recipe is None),
                  key=lambda name: (_REGISTRY[name].order, name))


def speed_methods() -> list[str]:
    """What ``quantbench speed`` times without ``--methods``: the registrations that ask for it."""
    return [name for name in method_names() if _REGISTRY[name].speed_default]


def main_job_methods() -> list[str]:
    """The main job's methods (``tox -e bench``, ``--quant-methods main``): FP32 and the recipes people ship on CPU,
    each registration saying so. Its cold time is, to first order, methods x (build + a 2,000-review evaluation),
    which is why it is not every method (README "Quick start")."""
    return [name for name in method_names() if _REGISTRY[name].main_job]


def cache_kinds() -> dict[str, str]:
    """The cache subfolders methods keep (kind -> what one entry is), from their registrations."""
    return {spec.cache_kind[0]: spec.cache_kind[1] for spec in _REGISTRY.values() if spec.cache_kind}


def task_kind(baseline: Any) -> str:
    """The kind of task a baseline is for (``classification`` for one without a RunConfig, as in tests)."""
    return "embedding" if getattr(getattr(baseline, "config", None), "embedding", False) else "classification"


def apply(name: str, baseline: Any, hardware: Hardware, config: Any = None) -> QuantizedModel:
    """Build method ``name`` from the FP32 ``baseline`` for ``hardware``; time the build.

    Raises QuantbenchError when the method does not support the hardware (with the method's reason).
    """
    spec = get_method(name)
    reason = spec.supports(hardware, task_kind(baseline))
    if reason:
        raise QuantbenchError(reason)
    if config is None:
        run_config = getattr(baseline, "config", None)
        config = make_config(name, getattr(run_config, "method_options", {}).get(name, {}))
    if not isinstance(config, spec.config_cls):
        raise QuantbenchError(f"method {name!r} takes a {spec.config_cls.__name__}, got {type(config).__name__}")
    hardware.activate()
    start = time.perf_counter()
    built = spec.transform(baseline, hardware, config)
    built.build_seconds = time.perf_counter() - start
    built.settings = {"config": config_to_dict(config), **built.settings}
    # the build's own kernel where its options or the CPU decide it, else the registration's for this hardware
    if not isinstance(built.settings.get("kernel"), dict):
        built.settings["kernel"] = spec.kernel_on(hardware).as_dict()
    return built


def make_config(name: str, options: dict[str, Any] | None = None) -> Any:
    """Method ``name``'s config with ``options`` (from ``method_options``) applied; unknown keys or bad values
    get a message naming the method, the key and what it accepts.

    Example:
        >>> make_config("static-int8", {"observer": "minmax"}).observer
        'minmax'
    """
    spec = get_method(name)
    fields = {f.name: f for f in dataclasses.fields(spec.config_cls) if f.name != "version"}
    options = dict(options or {})
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise QuantbenchError(
            f"method_options for {name!r}: unknown key(s) {', '.join(unknown)}; {name} accepts "
            f"{', '.join(fields) or 'no options'}"
        )
    try:
        return spec.config_cls(**options)
    except (TypeError, ValueError) as exc:
        raise QuantbenchError(f"method_options for {name!r}: {exc}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A method config as JSON, the way torchao serializes configs: type, version, data."""
    data = dataclasses.asdict(config)
    return {"_type": type(config).__name__, "_version": getattr(config, "version", 1), "_data": data}
