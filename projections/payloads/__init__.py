"""The domain payload types: arrears, trading, Modbus, BACnet and grid.

Each module defines its structs and registers them with
``eventstore.payloads.register_payloads``; each is also listed in the
``unbroken.payloads`` entry-point group, so stored events decode before anyone
imports it. A new domain adds a module here (or beside its own code) the same way.
"""

from .arrears import AccountBalance as AccountBalance
from .arrears import CalendarDay as CalendarDay
from .arrears import CustomerFlag as CustomerFlag
from .arrears import MeterReading as MeterReading
from .arrears import NotificationAck as NotificationAck
from .arrears import PaymentReceived as PaymentReceived
from .arrears import PaymentReversed as PaymentReversed
from .bacnet import BacnetObjectDefinition as BacnetObjectDefinition
from .bacnet import BacnetObjectDelete as BacnetObjectDelete
from .bacnet import BacnetValueUpdate as BacnetValueUpdate
from .grid import GridReading as GridReading
from .modbus import ModbusFault as ModbusFault
from .modbus import ModbusFrame as ModbusFrame
from .trading import MarketTick as MarketTick
from .trading import OperatorReset as OperatorReset
from .trading import OrderFill as OrderFill
from .trading import OrderRejected as OrderRejected
from .trading import TradeSignal as TradeSignal

__all__ = [
    "AccountBalance", "BacnetObjectDefinition", "BacnetObjectDelete", "BacnetValueUpdate",
    "CalendarDay", "CustomerFlag", "GridReading", "MarketTick", "MeterReading", "ModbusFault", "ModbusFrame",
    "NotificationAck", "OperatorReset", "OrderFill", "OrderRejected", "PaymentReceived", "PaymentReversed", "TradeSignal",
]
