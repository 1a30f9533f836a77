"""Whether two runs were timed on one machine (timing and memory rules only apply then)."""

from __future__ import annotations

from typing import Any

# machine_info keys that identify the hardware a run was timed on (see the module docstring).
_MACHINE_KEYS: tuple[tuple[str, ...], ...] = (("node",), ("machine",), ("processor",), ("cpu", "brand_raw"))
# Keys of the quantbench sub-dict that describe software, not the machine: a torch upgrade between runs is
# a change compare should gate, not a reason to skip the timing rules.
# ``threads`` is torch's thread count when the file was written (the last cell's, 1 after a cpu-1t cell): a state
# of the process, not of the machine.
_SOFTWARE_KEYS = frozenset({"versions", "threads"})


def machine_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """How two ``machine_info`` dicts differ in what identifies a machine (empty: the same machine).

    Compared: ``node``, ``machine``, ``processor``, ``cpu.brand_raw`` and the keys both hold in a
    ``quantbench`` sub-dict except its library ``versions``; a key only one side recorded is not evidence
    either way and is skipped.

    Example:
        >>> machine_differences({"node": "a"}, {"node": "b"})
        ["node: 'a' vs 'b'"]
    """
    paths = list(_MACHINE_KEYS)
    extra_base, extra_new = base.get("quantbench"), new.get("quantbench")
    if isinstance(extra_base, dict) and isinstance(extra_new, dict):
        paths += [("quantbench", key) for key in sorted((set(extra_base) & set(extra_new)) - _SOFTWARE_KEYS)]
    differences = []
    for path in paths:
        left, right = _dig(base, path), _dig(new, path)
        if left is not None and right is not None and left != right:
            differences.append(f"{'.'.join(path)}: {left!r} vs {right!r}")
    return differences


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data

