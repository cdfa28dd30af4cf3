"""Progress hooks that long work reports to. The core calls them; the CLI passes a rich one."""
from __future__ import annotations

from typing import Any


class Progress:
    """No-op progress hooks: the default for library callers and tests."""

    def start(self, description: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1, **fields: Any) -> None: ...
    def stop(self) -> None: ...
    def note(self, text: str) -> None: ...
    def say(self, text: str) -> None:
        """A permanent line of the work's own output (one per epoch), in a terminal as in a pipe."""


NULL = Progress()
