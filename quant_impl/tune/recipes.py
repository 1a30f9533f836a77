"""Saved recipes: what ``quantbench tune --save NAME`` found, in a TOML file (``quant_impl.config.recipes_path``),
runnable by name wherever a method is (``pytest bench --quant-methods NAME``, ``quantbench speed``, the gate).

A recipe is a registered method plus options, e.g.::

    [recipes.tuned]
    method = "static-int8"
    options = { observer = "minmax", float_layers = ["bert.encoder.layer.5.output.dense"] }

    [recipes.tuned.tuned_on]
    cpu_class = "amx"
    ...

``quant_impl.methods.registry.get_method`` registers one on first use (``register_recipe``): the method's own
registration with the options as its defaults and a ``recipe`` fact, saved with every run that measures it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from quant_impl.cache import write_bytes_atomic
from quant_impl.config import recipes_path
from quant_impl.errors import QuantbenchError

NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def read_recipes(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every recipe of the file (empty when there is none); a malformed file or entry is one error naming it."""
    path = path or recipes_path()
    if not path.is_file():
        return {}
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("recipes", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise QuantbenchError(f"{path}: cannot read it as TOML ({exc}); fix it, or delete it and run quantbench tune "
                              "--save again") from None
    for name, recipe in table.items():
        if not isinstance(recipe, dict) or not isinstance(recipe.get("method"), str) or not isinstance(
                recipe.get("options", {}), dict):
            raise QuantbenchError(f"{path} [recipes.{name}]: needs method = \"<registered method>\" and an options "
                                  "table")
    return dict(table)


def recipe_names(path: Path | None = None) -> list[str]:
    return sorted(read_recipes(path))


def register_saved_recipe(name: str, path: Path | None = None) -> bool:
    """Register recipe ``name`` from the recipes file as a method; False when the file has no such recipe."""
    recipe = read_recipes(path).get(name)
    if recipe is None:
        return False
    from quant_impl.methods.registry import register_recipe

    options = {key: tuple(value) if isinstance(value, list) else value
               for key, value in recipe.get("options", {}).items()}
    facts = {key: value for key, value in recipe.items() if key not in ("method", "options")}
    register_recipe(name, recipe["method"], options, facts)
    return True


def save_recipe(name: str, method: str, options: dict[str, Any], facts: dict[str, Any],
                path: Path | None = None) -> Path:
    """Write (or replace) recipe ``name`` in the recipes file, keeping the others; written atomically."""
    import tomli_w

    from quant_impl.methods.registry import _REGISTRY

    if not NAME.match(name):
        raise QuantbenchError(f"--save {name!r}: a recipe name is lower-case letters, digits and '-', starting with a "
                              "letter (e.g. tuned)")
    if name in _REGISTRY and _REGISTRY[name].recipe is None:
        raise QuantbenchError(f"--save {name}: {name} is a registered method; choose another name (e.g. tuned)")
    path = path or recipes_path()
    recipes = read_recipes(path)
    recipes[name] = {"method": method, "options": _plain(options), **_plain(facts)}
    text = ("# Recipes found by `quantbench tune --save NAME`; run one with pytest bench --quant-methods NAME.\n"
            + tomli_w.dumps({"recipes": recipes}))
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def cpu_class_warning(spec: Any, cpu_class: str | None) -> str | None:
    """Why running recipe ``spec`` on a CPU of ``cpu_class`` may not give what it was tuned for; None when it was
    tuned on this class (or ``spec`` is no recipe)."""
    tuned_on = (spec.recipe or {}).get("tuned_on", {})
    if not tuned_on or tuned_on.get("cpu_class") == cpu_class:
        return None
    return (f"recipe {spec.name} was tuned on a {tuned_on.get('cpu_class')} CPU ({tuned_on.get('cpu_model')}); this one "
            f"is {cpu_class}: the fastest recipe differs by CPU class, so run quantbench tune here before shipping it")


def _plain(value: Any) -> Any:
    """TOML has no null and no tuples: drop None values, lists for tuples."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
