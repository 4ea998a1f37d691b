"""Internal: argument checks that run before any model work, with errors that name the
argument."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

# Lone surrogates are valid in a Python str but cannot be encoded as UTF-8 (the tokenizer's
# input): reject them with the position, before any model work.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _type_name(value: Any) -> str:
    return type(value).__name__


def _check_encodable(name: str, value: str) -> None:
    if not value.isascii():
        bad = _SURROGATE.search(value)
        if bad is not None:
            raise ValueError(
                f"{name} contains a lone surrogate (U+{ord(bad.group()):04X}) at character "
                f"{bad.start()}, which is not valid Unicode text and cannot be encoded as UTF-8"
            )


def check_text(name: str, value: Any) -> str:
    """``value`` must be a str of valid Unicode."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {_type_name(value)}")
    _check_encodable(name, value)
    return value


def check_texts(name: str, value: Any) -> list[str]:
    """``value`` must be a list (or tuple, or other sequence) of str, not a bare string."""
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(
            f"{name} must be a list of str, got a bare {_type_name(value)} "
            f"(wrap a single text in a list: [{name[:-1] if name.endswith('s') else name}])"
        )
    if not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of str, got {_type_name(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{index}] must be a str, got {_type_name(item)}")
    for index, item in enumerate(value):
        _check_encodable(f"{name}[{index}]", item)
    return list(value)


def check_pairs(name: str, value: Any) -> list[tuple[str, str]]:
    """``value`` must be a sequence of (query, document) pairs of str."""
    if isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Sequence):
        raise TypeError(
            f"{name} must be a list of (query, document) pairs, got {_type_name(value)}"
        )
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(value):
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise TypeError(f"{name}[{index}] must be a (query, document) pair, got {item!r:.60}")
        query, document = item
        if not isinstance(query, str):
            raise TypeError(
                f"{name}[{index}][0] (the query) must be a str, got {_type_name(query)}"
            )
        if not isinstance(document, str):
            raise TypeError(
                f"{name}[{index}][1] (the document) must be a str, got {_type_name(document)}"
            )
        pairs.append((query, document))
    for index, (query, document) in enumerate(pairs):
        _check_encodable(f"{name}[{index}][0]", query)
        _check_encodable(f"{name}[{index}][1]", document)
    return pairs


def check_optional_int(
    name: str, value: Any, *, minimum: int, maximum: int | None = None
) -> int | None:
    """``value`` must be None or an integer (an int or a NumPy integer, not a bool) within
    [minimum, maximum]; returned as an int."""
    if value is None:
        return None
    return _checked_int(name, value, "an int or None", minimum, maximum)


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """``value`` must be an integer (an int or a NumPy integer, not a bool) >= minimum;
    returned as an int."""
    return _checked_int(name, value, "an int", minimum, None)


def _checked_int(name: str, value: Any, accepted: str, minimum: int, maximum: int | None) -> int:
    # numbers.Integral: int and NumPy's integer types (a count read from an array is one);
    # bool is an int subclass, but True as a count is a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {accepted}, got {_type_name(value)}")
    checked = int(value)
    if checked < minimum or (maximum is not None and checked > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ValueError(f"{name} must be {bounds}, got {checked}")
    return checked
