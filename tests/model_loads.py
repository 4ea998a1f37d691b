"""The models the engines' loader loaded, read from the line it logs for each load."""

from __future__ import annotations

import re

import pytest

_LOADED = re.compile(r"loaded (\w+) model '(.+)' in ")


def model_loads(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(kind, folder) of each model loaded while ``caplog`` captured the ``qwen3_core``
    logger at INFO."""
    found = [_LOADED.match(r.getMessage()) for r in caplog.records if r.name == "qwen3_core"]
    return [(match[1], match[2]) for match in found if match]
