"""Checks for method config fields, for the configs' ``__post_init__``: one wording for every method.

Each raises ValueError naming ``<ConfigClass>.<field>``, what it accepts and the value given (``make_config``
turns that into a QuantbenchError naming the method). Values arrive from TOML tables and ``METHOD.KEY=VALUE``
strings, so a string where a bool or a number belongs is the usual mistake.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     observer: str = "x"
    >>> check_choice(Demo(), "observer", ("histogram", "minmax"))
    Traceback (most recent call last):
    ...
    ValueError: Demo.observer must be one of ('histogram', 'minmax'), got 'x'
"""

from __future__ import annotations

from typing import Any


def _name(config: Any, fields: tuple[str, ...]) -> str:
    return f"{type(config).__name__}.{' and '.join(fields)}"


def check_choice(config: Any, field: str, allowed: tuple[Any, ...], context: str = "") -> None:
    """``config.<field>`` must be one of ``allowed``; ``context`` says when the rule applies (e.g. " for ...")."""
    value = getattr(config, field)
    if value not in allowed:
        raise ValueError(f"{_name(config, (field,))} must be one of {allowed}{context}, got {value!r}")


def check_bool(config: Any, *fields: str) -> None:
    """Each of ``fields`` must be a bool (TOML's ``true``/``false``), not a truthy string or number."""
    for field in fields:
        value = getattr(config, field)
        if not isinstance(value, bool):
            raise ValueError(f"{_name(config, (field,))} must be true or false, got {value!r}")


def check_min(config: Any, minimum: int, *fields: str, may_be_none: tuple[str, ...] = ()) -> None:
    """Each of ``fields`` must be an integer >= ``minimum`` (those in ``may_be_none`` may also be None).

    Fields that only make sense together (a batch size and a batch count) are named together, as one rule.
    """
    values = [getattr(config, field) for field in fields]
    if all((value is None and field in may_be_none) or _integer_at_least(value, minimum)
           for field, value in zip(fields, values)):
        return
    if len(fields) == 1:
        kind = "a whole number, or None" if may_be_none else "a whole number"
    else:
        kind = f"whole numbers; {' and '.join(may_be_none)} may be None" if may_be_none else "whole numbers"
    raise ValueError(f"{_name(config, fields)} must be >= {minimum} ({kind}), got {' and '.join(map(repr, values))}")


def check_positive(config: Any, field: str) -> None:
    """``config.<field>`` must be a real number > 0 (a learning rate)."""
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{_name(config, (field,))} must be a number > 0, got {value!r}")


def _integer_at_least(value: Any, minimum: int) -> bool:
    # bool is an int to Python, never a count here
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
