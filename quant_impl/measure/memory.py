"""Peak memory of one piece of work, measured in a fresh process so nothing else's allocations leak into it.

The caller names the work as an importable function (``module:function``) and its keyword arguments (JSON);
the child imports it, runs it once and reports two numbers: the kernel's true high-water mark of the process's
own memory (``VmHWM`` of ``/proc/self/status`` on Linux, ``ru_maxrss`` elsewhere) and the maximum of
memory-profiler's RSS samples (every 0.1 s, so it can miss short peaks; kept to show the curve's level). Not
``ru_maxrss`` on Linux: it survives fork and exec, so a child started by a large parent (pytest holding every
built method) reports the parent's size, not its own. Both include the Python interpreter and whatever the work
imports. What a method's figure covers (the baseline load, the build, one batch) is the caller's
``quant_impl.session.memory_child.build_and_run_once``.

Run by hand: ``python -m quant_impl.measure.memory --call quant_impl.session.memory_child:build_and_run_once
--kwargs-json '{"config": {"profile": "quick"}, "method": "static-int8", "hardware": "cpu", "batch_size": 1,
"seq_len": 128}'``
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from quant_impl.errors import QuantbenchError


@dataclass(frozen=True)
class Memory:
    peak_rss_mb: float  # the fresh process's own high-water mark
    sampled_peak_mb: float | None  # memory-profiler's highest sample (None if it could not sample)
    unit: str = "MB"


def measure_in_fresh_process(call: str, **kwargs: Any) -> Memory:
    """Run ``call`` (``module:function``) with ``kwargs`` (JSON-ready) once in a child Python process and return
    its peak memory. A QuantbenchError the work raises comes back as one line naming the call."""
    command = [sys.executable, "-m", "quant_impl.measure.memory", "--call", call, "--kwargs-json", json.dumps(kwargs)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        ours = [line for line in lines if line.startswith("quantbench: error:")]
        raise QuantbenchError(
            f"peak-memory child for {call} failed (exit {done.returncode}): " + " | ".join(ours or lines[-5:])
        )
    return Memory(**json.loads(done.stdout.strip().splitlines()[-1]))


def _child(call: str, kwargs: dict[str, Any]) -> Memory:
    from memory_profiler import memory_usage

    module, _, name = call.partition(":")
    try:
        work = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise QuantbenchError(f"--call {call!r}: cannot import it ({exc}); pass module:function") from None
    try:
        sampled = float(memory_usage((work, (), kwargs), interval=0.1, max_usage=True))
    except (OSError, RuntimeError):  # sampling needs a helper process; fall back to the kernel's figure
        work(**kwargs)
        sampled = None
    # Both are KiB here and memory-profiler reports MiB; all become MB (10**6 bytes) like every size here.
    return Memory(peak_rss_mb=own_peak_kib() * 1024 / 1e6, sampled_peak_mb=sampled * 1.048576 if sampled else None)


def own_peak_kib() -> int:
    """This process's own peak resident memory in KiB: VmHWM (Linux), else ru_maxrss (KiB on BSD/Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quant_impl.measure.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--call", required=True, metavar="MODULE:FUNCTION", help="the work to run once and measure")
    parser.add_argument("--kwargs-json", default="{}", help="its keyword arguments as one JSON object")
    args = parser.parse_args(argv)
    try:
        kwargs = json.loads(args.kwargs_json)
        if not isinstance(kwargs, dict):
            raise QuantbenchError(f"--kwargs-json must be a JSON object, got {args.kwargs_json!r}")
        print(json.dumps(asdict(_child(args.call, kwargs))))
    except json.JSONDecodeError as exc:
        print(f"quantbench: error: --kwargs-json is not JSON ({exc})", file=sys.stderr)
        return 2
    except QuantbenchError as exc:
        print(f"quantbench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
