"""What Host and Machine share: a handle closed on `with` exit and when collected."""

from __future__ import annotations

from types import TracebackType
from typing import Optional, TypeVar

T = TypeVar("T", bound="Closing")


class Closing:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
