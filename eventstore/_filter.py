"""``ReadFilter``: which events a read or a subscription passes on."""

from __future__ import annotations

from typing import Final

import msgspec

from ._types import RecordedEvent


class ReadFilter(msgspec.Struct, frozen=True):
    """Which events ``read_all`` and ``subscribe`` return.

    An event passes when its stream starts with any of ``stream_prefixes``
    (or there are none) and its type is one of ``types`` (or there are none).
    """

    stream_prefixes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    def matches(self, event: RecordedEvent) -> bool:
        """True when ``event`` passes this filter."""
        if self.types and event.type not in self.types:
            return False
        return not self.stream_prefixes or event.stream.startswith(self.stream_prefixes)

    @property
    def is_empty(self) -> bool:
        return not self.stream_prefixes and not self.types


NO_FILTER: Final = ReadFilter()
