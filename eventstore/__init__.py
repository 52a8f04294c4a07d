"""Events, the store contract, and its backends.

``open_store(uri)`` opens a store; ``NewEvent`` is what you append;
``RecordedEvent`` is what you read back. Every store error is a ``StoreError``,
and every error unbroken raises is an ``UnbrokenError``. The public modules
beside this face: ``eventstore.payloads`` (payload structs and their
registry), ``eventstore.validation`` (the checks and limits applied before
storage) and ``eventstore.cli`` (the ``unbroken`` command's root and exit
codes). See docs/architecture.md.
"""

from ._contract import AppendRequest as AppendRequest
from ._contract import Capabilities as Capabilities
from ._contract import EventStore as EventStore
from ._errors import CorruptEvent as CorruptEvent
from ._errors import DuplicateIdConflict as DuplicateIdConflict
from ._errors import InvalidArgument as InvalidArgument
from ._errors import InvalidEvent as InvalidEvent
from ._errors import InvalidPayload as InvalidPayload
from ._errors import StoreClosed as StoreClosed
from ._errors import StoreDamaged as StoreDamaged
from ._errors import StoreError as StoreError
from ._errors import StoreFull as StoreFull
from ._errors import StoreIOError as StoreIOError
from ._errors import StoreLocked as StoreLocked
from ._errors import StoreNotFound as StoreNotFound
from ._errors import StoreReadOnly as StoreReadOnly
from ._errors import StoreUnavailable as StoreUnavailable
from ._errors import UnbrokenError as UnbrokenError
from ._errors import WrongExpectedVersion as WrongExpectedVersion
from ._filter import NO_FILTER as NO_FILTER
from ._filter import ReadFilter as ReadFilter
from ._open import DEFAULT_URI as DEFAULT_URI
from ._open import open_store as open_store
from ._subscription import Subscription as Subscription
from ._types import ANY as ANY
from ._types import EXISTS as EXISTS
from ._types import NO_STREAM as NO_STREAM
from ._types import AppendResult as AppendResult
from ._types import Metadata as Metadata
from ._types import NewEvent as NewEvent
from ._types import RecordedEvent as RecordedEvent
from ._types import derived_event_id as derived_event_id
from ._types import type_of as type_of

__all__ = [
    "ANY",
    "AppendRequest",
    "AppendResult",
    "Capabilities",
    "CorruptEvent",
    "DEFAULT_URI",
    "DuplicateIdConflict",
    "EXISTS",
    "EventStore",
    "InvalidArgument",
    "InvalidEvent",
    "InvalidPayload",
    "Metadata",
    "NO_FILTER",
    "NO_STREAM",
    "NewEvent",
    "ReadFilter",
    "RecordedEvent",
    "StoreClosed",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "StoreIOError",
    "StoreLocked",
    "StoreNotFound",
    "StoreReadOnly",
    "StoreUnavailable",
    "Subscription",
    "UnbrokenError",
    "WrongExpectedVersion",
    "derived_event_id",
    "open_store",
    "type_of",
]
