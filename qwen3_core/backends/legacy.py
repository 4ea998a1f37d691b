"""The flat backend keywords of earlier releases (``device=``, ``vllm_kwargs=``,
``base_url=`` ...), still accepted for one release with a DeprecationWarning that shows the
``backend=...Options(...)`` to write instead."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from qwen3_core.backends.options import (
    BackendChoice,
    BackendOptions,
    ServerOptions,
    TransformersOptions,
    VllmOptions,
    backend_options,
    options_class,
    setting_names,
)

# Old keyword -> its name in the options.
_RENAMED = {"vllm_kwargs": "engine_args"}
_OLD_KEYWORDS = (
    {
        name
        for cls in (TransformersOptions, VllmOptions, ServerOptions)
        for name in setting_names(cls)
    }
    - {"engine_args", "enable_prefix_caching"}
) | set(_RENAMED)


def options_with_old_keywords(
    owner: str,
    backend: BackendChoice,
    old: Mapping[str, Any],
    *,
    not_for_owner: frozenset[str] = frozenset(),
    stacklevel: int = 3,
) -> BackendOptions:
    """``backend=`` as options, with the old flat keywords ``old`` folded in.

    Args:
        owner: The class being constructed, for messages.
        backend: What ``backend=`` was given.
        old: The further keyword arguments given.
        not_for_owner: Option names the owner never took as keywords (a TypeError, as
            before).
        stacklevel: Frames up to the user's call, for the warning.

    Raises:
        TypeError: A keyword that never existed.
        ValueError: Old keywords beside options, or one that the backend does not use.
    """
    unknown = sorted(set(old) - _OLD_KEYWORDS | (set(old) & not_for_owner))
    if unknown:
        raise TypeError(
            f"{owner}() got unexpected keyword argument(s): {', '.join(map(repr, unknown))}"
        )
    if not old:
        return backend_options(backend)
    given = ", ".join(f"{name}=..." for name in old)
    if not isinstance(backend, str):
        raise ValueError(
            f"{given} given beside backend={type(backend).__name__}(...): put them inside "
            "the options instead"
        )
    cls = options_class(backend)
    settings = {_RENAMED.get(name, name): value for name, value in old.items()}
    accepted = setting_names(cls)
    wrong = [name for name in old if _RENAMED.get(name, name) not in accepted]
    if wrong:
        raise ValueError(
            f"{', '.join(f'{name}=' for name in wrong)} is not a setting of "
            f"backend={backend!r}; {cls.__name__} takes {', '.join(accepted)}"
        )
    shown = ", ".join(
        f"{name}={'...' if name == 'api_key' else repr(value)}" for name, value in settings.items()
    )
    warnings.warn(
        f"{owner}({given}) is deprecated and will be removed in the next release: pass "
        f"backend={cls.__name__}({shown})",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    options: BackendOptions = cls(**settings)
    return options
