"""Peak memory of one method, measured in a fresh process so no other method's allocations leak into it.

The child loads the cached FP32 baseline, builds the method and runs one batch. It reports two numbers:
the kernel's true high-water mark of the process's own memory (``VmHWM`` of ``/proc/self/status`` on Linux,
``ru_maxrss`` elsewhere) and the maximum of memory-profiler's RSS samples (every 0.1 s, so it can miss short
peaks; kept to show the curve's level). Not ``ru_maxrss`` on Linux: it survives fork and exec, so a child
started by a large parent (pytest holding every built method) reports the parent's size, not its own.
Both include the Python interpreter, torch and the FP32 baseline the method is built from.

Run by hand: ``python -m quant_impl.measure.memory --method static-int8 --config-json '{"profile": "quick"}'``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

from quant_impl.config import RunConfig
from quant_impl.errors import QuantbenchError


@dataclass(frozen=True)
class Memory:
    peak_rss_mb: float  # ru_maxrss of the fresh process
    sampled_peak_mb: float | None  # memory-profiler's highest sample (None if it could not sample)
    unit: str = "MB"


def measure_in_fresh_process(cfg: RunConfig, method: str, hardware: str, batch_size: int, seq_len: int) -> Memory:
    """Build and run ``method`` once in a child Python process and return its peak memory.

    The baseline must already be cached (the child refuses to fine-tune, so a figure never includes training).
    """
    command = [
        sys.executable, "-m", "quant_impl.measure.memory",
        "--method", method, "--hardware", hardware,
        "--batch-size", str(batch_size), "--seq-len", str(seq_len),
        "--config-json", json.dumps(_overrides(cfg)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        ours = [line for line in lines if line.startswith("quantbench: error:")]
        raise QuantbenchError(
            f"peak-memory child for {method} failed (exit {done.returncode}): " + " | ".join(ours or lines[-5:])
        )
    return Memory(**json.loads(done.stdout.strip().splitlines()[-1]))


def _overrides(cfg: RunConfig) -> dict[str, Any]:
    return cfg.to_dict()


def _child(args: argparse.Namespace) -> Memory:
    import torch
    from memory_profiler import memory_usage

    from quant_impl.hardware import get_hardware
    from quant_impl.methods import apply
    from quant_impl.train import checkpoint_path, get_baseline

    overrides = json.loads(args.config_json)
    cfg = RunConfig.load(profile=overrides.pop("profile", None), overrides=overrides)
    if not (checkpoint_path(cfg) / "quantbench_baseline.json").is_file():
        raise QuantbenchError(f"no cached baseline at {checkpoint_path(cfg)}; build it first (quantbench baseline)")

    def build_and_run() -> None:
        baseline = get_baseline(cfg)
        built = apply(args.method, baseline, get_hardware(args.hardware))
        rows = baseline.data["test"][: args.batch_size]
        built(rows["input_ids"][:, : args.seq_len], rows["attention_mask"][:, : args.seq_len])
        torch.cuda.synchronize() if torch.cuda.is_available() else None

    try:
        sampled = float(memory_usage((build_and_run, (), {}), interval=0.1, max_usage=True))
    except (OSError, RuntimeError):  # sampling needs a helper process; fall back to the kernel's figure
        build_and_run()
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
    parser.add_argument("--method", required=True, help="registered method name")
    parser.add_argument("--hardware", default="cpu", help="hardware id (cpu, cpu-1t, cuda)")
    parser.add_argument("--batch-size", type=int, default=1, help="reviews in the batch that is run once")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per review")
    parser.add_argument("--config-json", default="{}", help="RunConfig overrides as JSON (profile included)")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(asdict(_child(args))))
    except QuantbenchError as exc:
        print(f"quantbench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
