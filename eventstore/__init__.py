"""Events, the store contract, and its backends.

``open_store(uri)`` opens a store; ``NewEvent`` is what you append;
``RecordedEvent`` is what you read back. Every error is a ``StoreError``.
"""

from ._contract import NO_FILTER as NO_FILTER
from ._contract import EventStore as EventStore
from ._contract import ReadFilter as ReadFilter
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
from ._errors import StoreUnavailable as StoreUnavailable
from ._errors import WrongExpectedVersion as WrongExpectedVersion
from ._open import DEFAULT_URI as DEFAULT_URI
from ._open import open_store as open_store
from ._payloads import PAYLOAD_TYPES as PAYLOAD_TYPES
from ._payloads import AccountBalance as AccountBalance
from ._payloads import BacnetObjectDefinition as BacnetObjectDefinition
from ._payloads import BacnetObjectDelete as BacnetObjectDelete
from ._payloads import BacnetValueUpdate as BacnetValueUpdate
from ._payloads import CalendarDay as CalendarDay
from ._payloads import CustomerFlag as CustomerFlag
from ._payloads import Fault as Fault
from ._payloads import Heartbeat as Heartbeat
from ._payloads import MarketTick as MarketTick
from ._payloads import MeterReading as MeterReading
from ._payloads import ModbusFault as ModbusFault
from ._payloads import ModbusFrame as ModbusFrame
from ._payloads import NotificationAck as NotificationAck
from ._payloads import OrderFill as OrderFill
from ._payloads import Payload as Payload
from ._payloads import PaymentReceived as PaymentReceived
from ._payloads import PaymentReversed as PaymentReversed
from ._payloads import Rejected as Rejected
from ._payloads import TradeSignal as TradeSignal
from ._payloads import decode_payload as decode_payload
from ._payloads import encode_data as encode_data
from ._payloads import encode_payload as encode_payload
from ._payloads import is_known_type as is_known_type
from ._subscription import Subscription as Subscription
from ._types import ANY as ANY
from ._types import EXISTS as EXISTS
from ._types import NO_STREAM as NO_STREAM
from ._types import AppendResult as AppendResult
from ._types import Metadata as Metadata
from ._types import NewEvent as NewEvent
from ._types import RecordedEvent as RecordedEvent
from ._types import type_of as type_of

__all__ = [name for name in dir() if not name.startswith("_")]
