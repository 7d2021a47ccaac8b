"""Turn pydantic's validation errors into runnerctl's one-line problems.

pydantic reports each failure with a location tuple, a type and a message written for
programmers. Operators get one line each instead: where (file and key path, or the
environment variable), what was wrong with which value, and what to write instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from runnerctl.config.fields import show

# Where a problem sits: the key path in the file, or a variable name, built from a loc.
Locate = Callable[[Sequence[int | str]], str]


def key_path(prefix: str, loc: Sequence[int | str]) -> str:
    """``runners[2]`` + ``("repo",)`` -> ``runners[2].repo``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.isidentifier():
            path += f"[{show(part)}]"  # an odd key stays on one line and visible
        else:
            path = f"{path}.{part}" if path else part
    return path


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known key an unknown one most likely meant, if any is close."""
    matches = difflib.get_close_matches(key.lower(), list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key(key: object, known: Iterable[str]) -> str:
    """The message for a key the section does not have."""
    known = sorted(known)
    guess = closest(key, known) if isinstance(key, str) else None
    if guess:
        return f"unknown key {show(key)} (did you mean {guess}?)"
    return f"unknown key {show(key)} (valid keys: {', '.join(known)})"


def _number(value: object) -> str:
    """``0.0`` -> ``0``: bounds read better without a needless decimal."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def describe(error: ErrorDetails, model: type[BaseModel]) -> str:
    """One error, without its location, as an operator-facing sentence."""
    kind = error["type"]
    value: Any = error.get("input")
    context = error.get("ctx") or {}
    if kind == "runnerctl":
        return str(context.get("detail", error["msg"]))
    if kind == "extra_forbidden":
        return unknown_key(error["loc"][-1], model.model_fields)
    if kind == "missing":
        return "is required"
    if kind in ("bool_type", "bool_parsing"):
        return f"{show(value)} is not true or false"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{show(value)} is not a whole number"
    if kind in ("float_type", "float_parsing"):
        return f"{show(value)} is not a number"
    if kind == "greater_than":
        return f"{show(value)} must be greater than {_number(context.get('gt'))}"
    if kind == "greater_than_equal":
        return f"{show(value)} must be at least {_number(context.get('ge'))}"
    if kind == "less_than_equal":
        return f"{show(value)} must be at most {_number(context.get('le'))}"
    if kind == "literal_error":
        return f"{show(value)} is not one of {context.get('expected')}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{show(value)} is not a mapping of key: value"
    if kind in ("string_type", "str_type"):
        return f"{show(value)} is not a string"
    return " ".join(f"{show(value)}: {error['msg']}".split())


def problems(
    error: ValidationError, model: type[BaseModel], where: Locate, value_hidden: bool = False
) -> list[str]:
    """Every error in ``error`` as ``<where>: <what>`` lines; ``value_hidden`` for secrets."""
    lines = []
    for details in error.errors():
        message = "is not valid" if value_hidden else describe(details, model)
        lines.append(f"{where(details['loc'])}: {message}")
    return lines
