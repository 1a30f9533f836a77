"""quant_impl.quiet: the third-party notices quantbench and pytest bench hush, and only those (no model is loaded)."""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from types import SimpleNamespace
from typing import Iterator

import pytest

from quant_impl import quiet
from quant_impl.cli import main

# One real message per hushed warning, with the module that emits it (torch 2.13, transformers 5).
WARNED = [
    ("To copy construct from a tensor, it is recommended to use sourceTensor.detach().clone() or "
     "sourceTensor.detach().clone().requires_grad_(True), rather than torch.tensor(sourceTensor).",
     UserWarning, "torch._inductor.mkldnn_lowerings"),
    ("`torch.jit.script_method` is deprecated. Please switch to `torch.compile` or `torch.export`.",
     DeprecationWarning, "torch.jit._script"),
    ("`torch.jit.trace` is deprecated. Please switch to `torch.compile` or `torch.export`.",
     DeprecationWarning, "torch.jit._trace"),
    ("`torch.jit.trace_method` is deprecated. Please switch to `torch.compile` or `torch.export`.",
     DeprecationWarning, "torch.jit._trace"),
    ("`is_gradient_checkpointing` is deprecated and will be removed in v6. Use `is_activation_checkpointing` "
     "instead.", FutureWarning, "transformers.modeling_utils"),
    ("Int4OpaqueTensor does not implement _stable_hash_for_caching. For PT2-compatible tensor subclasses, it is "
     "recommended to implement _stable_hash_for_caching(self) -> str for stable AOT autograd caching.",
     UserWarning, "torch._functorch._aot_autograd.autograd_cache"),
]

# One real line per hushed log message, on the logger that logs it.
LOGGED = [
    ("transformers.modeling_utils",
     "`loss_type=None` was set in the config but it is unrecognized. Using the default loss: `ForCausalLMLoss`."),
    ("transformers.modeling_utils",
     "`loss_type=None` was set in the config but it is unrecognised. Using the default loss: `ForCausalLMLoss`."),
    ("torchao", "Failed to load /venv/lib/python3.11/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so"
     ": Could not load this library: /venv/lib/python3.11/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-"
     "gnu.so"),
    ("torchao", "Failed to load /venv/lib/python3.11/site-packages/torchao/_C_cutlass_90a.abi3.so: Could not load "
     "this library: /venv/lib/python3.11/site-packages/torchao/_C_cutlass_90a.abi3.so"),
    ("torchao.kernel.intmm", "Warning: Detected no triton, on systems without Triton certain kernels will not work"),
    ("torch.utils._pytree", "<enum 'KernelPreference'> is an Enum subclass and is now natively supported by "
     "torch.compile as an opaque value type. Calling register_constant() on Enum subclasses is deprecated and will "
     "be an error in a future release."),
]

# Lines the same loggers log that a user can act on, or that are quantbench's own: never hushed.
KEPT_LOGS = [
    ("transformers.modeling_utils", "`torch_dtype` is deprecated! Use `dtype` instead!"),
    ("torchao", "Skipping import of cpp extensions due to incompatible torch version. Please upgrade to torch >= "
     "2.11.0 (found 2.6.0)."),
    ("quant_impl.train", "`loss_type=None` was set in the config but it is unrecognized."),
]


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    """Each test starts unhushed, with every warning shown (not pytest's or pyproject's filters: those hide some of
    the same warnings), and leaves nothing behind (the CLI tests elsewhere install the hush in this process)."""
    loggers = {name: logging.getLogger(name) for name in quiet._LOG_FILTERS}
    saved = {name: list(logger.filters) for name, logger in loggers.items()}
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("always")
        quiet.install(True)
        try:
            yield
        finally:
            for name, logger in loggers.items():
                logger.filters[:] = saved[name]


def _shown(message: str, category: type[Warning], module: str) -> bool:
    """Whether a warning ``module`` emits passes the current filters (explicit: warnings.warn would name this
    module; a fresh registry: nothing is remembered as shown once)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit(message, category, f"/site-packages/{module.replace('.', '/')}.py", 1, module=module,
                               registry={})
    return bool(caught)


@contextlib.contextmanager
def _records(name: str) -> Iterator[list[str]]:
    """The messages logged on ``name`` that reach its handlers, at any level."""
    logger = logging.getLogger(name)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def test_every_hushed_warning_has_a_sample() -> None:
    for hushed in quiet.WARNINGS:
        assert any(re.match(hushed.message, text, re.I) and re.match(hushed.module, module) and
                   issubclass(category, hushed.category) for text, category, module in WARNED), hushed
    for hushed in quiet.LOGS:
        assert any(name == hushed.logger and re.search(hushed.message, text) for name, text in LOGGED), hushed


@pytest.mark.parametrize(("message", "category", "module"), WARNED, ids=[module for _, _, module in WARNED])
def test_third_party_warning_is_hushed_unless_verbose(message: str, category: type[Warning], module: str) -> None:
    assert _shown(message, category, module)
    quiet.install(False)
    assert not _shown(message, category, module)
    # The same words from quantbench itself are quantbench's to say.
    assert _shown(message, category, "quant_impl.methods.half")
    quiet.install(True)
    assert _shown(message, category, module)


def test_quantbench_warnings_are_never_hushed() -> None:
    from quant_impl.methods.half import FP16_EMULATED

    quiet.install(False)
    assert _shown(FP16_EMULATED, UserWarning, "quant_impl.methods.half")
    assert _shown("Inductor could not compile", UserWarning, "quant_impl.methods.compiled")
    for hushed in quiet.WARNINGS:
        assert not re.match(hushed.module, "quant_impl"), hushed
    for hushed in quiet.LOGS:
        assert hushed.logger.split(".")[0] != "quant_impl", hushed


def test_a_different_message_from_a_hushed_module_is_shown() -> None:
    quiet.install(False)
    assert _shown("Converting a tensor to a Python boolean", UserWarning, "torch._inductor.lowering")
    assert _shown("`gradient_checkpointing_enable` is deprecated", FutureWarning, "transformers.modeling_utils")


@pytest.mark.parametrize(("name", "text"), LOGGED, ids=[name for name, _ in LOGGED])
def test_third_party_log_line_is_hushed_unless_verbose(name: str, text: str) -> None:
    quiet.install(False)
    with _records(name) as seen:
        logging.getLogger(name).warning(text)
    assert seen == []
    quiet.install(True)
    with _records(name) as seen:
        logging.getLogger(name).warning(text)
    assert seen == [text]


def test_other_log_lines_are_kept() -> None:
    quiet.install(False)
    for name, text in KEPT_LOGS:
        with _records(name) as seen:
            logging.getLogger(name).warning(text)
        assert seen == [text], name
    # A record with %-arguments is matched on its text, as its handler will print it.
    with _records("torch.utils._pytree") as seen:
        logging.getLogger("torch.utils._pytree").warning("%s is an Enum subclass and is now natively supported by "
                                                         "torch.compile as an opaque value type.", "<enum 'X'>")
        logging.getLogger("torch.utils._pytree").warning("%s is not a pytree node", "<class 'X'>")
    assert seen == ["<class 'X'> is not a pytree node"]


def test_install_is_idempotent_and_verbose_takes_it_all_off() -> None:
    before = list(warnings.filters)
    quiet.install(False)
    once = list(warnings.filters)
    assert len(once) == len(before) + len(quiet.WARNINGS)
    quiet.install(False)
    assert warnings.filters == once
    for name in quiet._LOG_FILTERS:
        assert logging.getLogger(name).filters.count(quiet._LOG_FILTERS[name]) == 1
    quiet.install(True)
    assert warnings.filters == before
    quiet.install(True)
    assert warnings.filters == before
    for name in quiet._LOG_FILTERS:
        assert quiet._LOG_FILTERS[name] not in logging.getLogger(name).filters


def test_pytest_lines_are_the_same_filters() -> None:
    from _pytest.config import parse_warning_filter

    for hushed, line in zip(quiet.WARNINGS, quiet.pytest_lines()):
        assert parse_warning_filter(line, escape=False) == ("ignore", hushed.message, hushed.category,
                                                            hushed.module, 0)


def _fake_config(verbose: int) -> SimpleNamespace:
    ini: list[str] = ["ignore::UserWarning:torchao.*"]
    return SimpleNamespace(option=SimpleNamespace(verbose=verbose), ini=ini, getini=lambda name: ini,
                           addinivalue_line=lambda name, line: ini.append(line))


def test_pytest_bench_hushes_unless_run_with_v() -> None:
    from quant_impl.session.plugin import hush_third_party

    config = _fake_config(verbose=0)
    hush_third_party(config)  # type: ignore[arg-type]
    hush_third_party(config)  # type: ignore[arg-type]
    assert config.ini == ["ignore::UserWarning:torchao.*", *quiet.pytest_lines()]
    assert not _shown(*WARNED[0])
    verbose = _fake_config(verbose=1)
    hush_third_party(verbose)  # type: ignore[arg-type]
    assert verbose.ini == ["ignore::UserWarning:torchao.*"]
    assert _shown(*WARNED[0])


def test_cli_hushes_unless_verbose(capsys: pytest.CaptureFixture) -> None:
    hush = quiet._LOG_FILTERS["transformers.modeling_utils"]
    assert main(["tasks", "--json"]) == 0
    assert hush in logging.getLogger("transformers.modeling_utils").filters
    assert not _shown(*WARNED[0])
    assert main(["tasks", "--json", "-v"]) == 0
    assert hush not in logging.getLogger("transformers.modeling_utils").filters
    assert _shown(*WARNED[0])
    capsys.readouterr()


@pytest.mark.parametrize("argv", [["--help"], ["speed", "--help"], ["cache", "list", "--help"]])
def test_help_explains_the_verbose_flag(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "-v, --verbose" in out and "third-party warnings hidden by default" in out


def test_fp16_on_a_cpu_without_fp16_math_says_it_is_emulated(monkeypatch: pytest.MonkeyPatch) -> None:
    from quant_impl.hardware import get_hardware
    from quant_impl.methods import half, kernels

    monkeypatch.setattr(half, "_half", lambda baseline, hardware, name, dtype: name)
    quiet.install(False)
    monkeypatch.setattr(kernels, "_isa", lambda: {"avx2": True, "avx512_fp16": False})
    with warnings.catch_warnings(record=True) as caught:
        half._fp16_transform(None, get_hardware("cpu"), half.Fp16Config())
    assert [str(w.message) for w in caught] == [half.FP16_EMULATED]
    assert caught[0].filename == half.__file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        half._fp16_transform(None, get_hardware("cuda"), half.Fp16Config())
        half._bf16_transform(None, get_hardware("cpu"), half.Bf16Config())
        monkeypatch.setattr(kernels, "_isa", lambda: {"avx2": True, "avx512_fp16": True})
        half._fp16_transform(None, get_hardware("cpu"), half.Fp16Config())
