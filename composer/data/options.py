"""Options on a dataset's name (``synthetic:rows=5000,seed=3``): parsed and checked in one place
for every built-in dataset that takes them."""
from __future__ import annotations

import numpy as np

from .errors import DataError, did_you_mean


def parse_options(base: str, text: str, types: dict) -> dict:
    """``'rows=5000,seed=3'`` -> {name: value}; ``types`` maps each option to int or float. An
    unknown option (did-you-mean), an option without a value, one given twice or a value that is
    not a number of the option's type is a DataError naming the option."""
    values: dict = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, raw = (s.strip() for s in item.partition("="))
        if key not in types:
            raise DataError(f"unknown option '{key}' of dataset '{base}'", key=key,
                            hint=did_you_mean(key, types, what="options"))
        if not eq or not raw:
            raise DataError(f"option '{key}' needs a value, as in '{base}:{key}=...'", key=key)
        if key in values:
            raise DataError(f"option '{key}' is given twice", key=key)
        values[key] = number(key, raw, integer=types[key] in (int, "int"))
    return values


def number(key: str, raw: str, integer: bool):
    try:
        value = float(raw)
    except ValueError:
        value = None
    if value is None or not np.isfinite(value) or (integer and not value.is_integer()):
        raise DataError(f"option '{key}' must be {'an integer' if integer else 'a number'}, "
                        f"got '{raw}'", key=key)
    return int(value) if integer else value  # so rows=1e5 is accepted
