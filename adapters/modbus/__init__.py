"""Modbus field inputs as events: device files, a poller, writes with read-back, a simulator.

- ``load_devices(path)`` reads a device file (TOML; ``DeviceFileError`` when it is wrong).
- ``DevicePoller`` polls one device (Modbus TCP through our own ``MbapClient``, RTU framing
  through pymodbus); ``Recorder`` appends what it sees in batches; ``ingest(devices, store)``
  runs every device until stopped.
- ``Simulator(devices, plan)`` serves the devices from a seeded model and misbehaves as a
  plan (``load_plan``) says.

See docs/modbus.md.
"""

from __future__ import annotations

from .codec import decode_block as decode_block
from .codec import decode_value as decode_value
from .codec import encode_value as encode_value
from .devices import Block as Block
from .devices import Device as Device
from .devices import DeviceFileError as DeviceFileError
from .devices import Register as Register
from .devices import load_devices as load_devices
from .devices import parse_devices as parse_devices
from .ingest import Ingest as Ingest
from .ingest import ingest as ingest
from .mbap import MbapClient as MbapClient
from .plans import ACTIONS as ACTIONS
from .plans import Plan as Plan
from .plans import PlanError as PlanError
from .plans import Rule as Rule
from .plans import load_plan as load_plan
from .plans import parse_plan as parse_plan
from .poller import Backoff as Backoff
from .poller import DevicePoller as DevicePoller
from .recorder import Recorder as Recorder
from .recorder import event_id as event_id
from .simulator import DeviceModel as DeviceModel
from .simulator import Simulator as Simulator

__all__ = [name for name in dir() if not name.startswith("_")]
