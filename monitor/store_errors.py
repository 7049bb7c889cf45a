"""The session store's exceptions: one family, and the write refusal that a later flush may mend."""

from __future__ import annotations


class StoreError(Exception):
    """The session store cannot do what was asked; the message names the session or file."""


class StoreUnavailable(StoreError):
    """SQLite refused a write; what was buffered is kept and a later flush may work.

    ``reason``: "full" (disk or database full), "busy" (another connection holds the
    write lock), "io" (an I/O error, a read-only or vanished file) or "error" (any other
    SQLite error, such as a damaged file, which waiting will not mend).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
