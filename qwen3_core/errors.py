"""How a library's error is quoted inside one of ours."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when the message is empty:
    libraries' messages can run to many lines (a traceback, a server's page)."""
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__
