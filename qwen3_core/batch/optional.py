"""Internal: Ray Data is an optional extra: it is imported only when a batch job is built, so
``import qwen3_core`` (and ``qwen3_core.batch``) never pays for it or needs it."""

from __future__ import annotations

from types import ModuleType

from qwen3_core.extras import install_command

EXTRA_HINT = f"{install_command('ray')} (or: pip install 'ray[data]')"


def import_ray_data() -> ModuleType:
    """``ray.data``, or an ImportError that names the extra to install.

    Returns:
        The ``ray.data`` module.

    Raises:
        ImportError: Ray, or pyarrow (which Ray brings only with its ``data`` extra), is not
            installed.
    """
    try:
        import pyarrow  # noqa: F401  (ray without its [data] extra lacks it)
        import ray.data
    except ImportError as exc:
        raise ImportError(
            f"qwen3_core.batch runs on Ray Data, which is not installed ({exc}): {EXTRA_HINT}"
        ) from exc
    data: ModuleType = ray.data
    return data
