"""Internal (import its public names from ``qwen3_core``): the errors qwen3-rag raises, in one
place.

Each subclasses ``Qwen3RagError`` and the builtin it is an instance of (a ``ModelKindError``
is a ``ValueError``, a ``ModelNotFoundError`` an ``OSError``), so ``except Qwen3RagError``
catches everything qwen3-rag itself refuses, and ``except ValueError`` keeps working.
Bad arguments are plain ``TypeError`` / ``ValueError`` naming the argument.
"""

from __future__ import annotations

from qwen3_core.defaults import ModelKind


class Qwen3RagError(Exception):
    """Base of the errors qwen3-rag raises about models, files, servers and data."""


class ModelNotFoundError(Qwen3RagError, OSError):
    """The model folder does not exist, or the model id could not be fetched."""


class ModelKindError(Qwen3RagError, ValueError):
    """The folder holds something other than the Qwen3 model asked for, or a variant that
    cannot be scored exactly."""

    holds: ModelKind | None = None
    """When the folder looks like the other kind of Qwen3 model: that kind. The message then
    ends by naming the class that loads it, after ``reason``."""
    reason: str = ""
    """With ``holds``: the message without the class to use (a command line names its own
    option instead)."""


class ModelFilesChangedError(Qwen3RagError, RuntimeError):
    """A model folder's files were rewritten while a model was being loaded from them, or in
    place under a live engine that still had to read from them (it names the file)."""


class ServerError(Qwen3RagError, RuntimeError):
    """A model server could not be reached, refused the request, or answered something that
    is not what the model should return."""


class ImageInputError(Qwen3RagError, ValueError):
    """An image input that cannot be used (unreadable, truncated, too large, not an image,
    not allowed to be fetched), with the input it came from and the reason."""


class DatasetError(Qwen3RagError, ValueError):
    """A dataset file that cannot be used, with the file, the line and the reason."""


class CorpusError(Qwen3RagError, ValueError):
    """A corpus file that cannot be used, with the reason."""


class UsageError(Qwen3RagError, ValueError):
    """A command-line argument the command cannot use, with the reason."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when the message is empty:
    libraries' messages can run to many lines (a traceback, a server's page)."""
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__
