"""The one exception a rejected extract raises, and the one-line form of its message.

The lowest module of the reader: the manifest, the folder layout checks and the reading all
raise ``ExtractRejected``, and none of them is imported here.
"""

from __future__ import annotations

__all__ = ["ExtractRejected", "one_line", "reject"]


class ExtractRejected(Exception):
    """Table-level fault. str(exc) is ONE line naming the file, the column (if any) and the fix.

    Public as ``chartaudit.schemas.ExtractRejected``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str, limit: int = 400) -> str:
    """Collapse whitespace (library error texts span lines) and cap the length."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def reject(text: str) -> ExtractRejected:
    """``ExtractRejected`` with the usual ``extract rejected: `` prefix (raise it)."""
    return ExtractRejected(f"extract rejected: {text}")
