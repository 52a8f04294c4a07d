"""Load profiles: what the messages of a run are, and the projection that folds them.

A profile turns a seeded generator into ``(stream, payload)`` for message
``seq`` (in send order), knowing the phase the message belongs to and where
in the run it falls (``progress`` from 0 to 1), so a trading run can crash the
price in its middle. Profiles:

- ``bn001``: building data (BN-001): 1,000 objects (40% analog input, 30%
  analog value, 20% binary input, 10% multi-state value); the first message
  of each object defines it, then 90% value updates, 8% definitions, 2%
  deletes. Its read mix (BACnet target) is 60% ReadProperty, 30%
  ReadPropertyMultiple, 10% ReadRange.
- ``bn002``: the same mix; its default arrivals are bursts of 10x over the base.
- ``arrears``: meter readings, payments, statements and flags over 1,000 accounts.
- ``trading``: ticks for four symbols with a 15% flash crash between 40% and
  50% of the run, and a signal flood between 60% and 65%.
- ``grid``: 20 nodes (producers, consumers, storage, a line) each reporting an
  interval's energy and frequency in turn.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventstore import UnbrokenError
from projections.payloads.arrears import (
    AccountBalance,
    CustomerFlag,
    MeterReading,
    PaymentReceived,
)
from projections.payloads.bacnet import (
    BacnetObjectDefinition,
    BacnetObjectDelete,
    BacnetValueUpdate,
)
from projections.payloads.grid import GridReading
from projections.payloads.trading import MarketTick, TradeSignal

from ._arrivals import Arrivals, bursts, poisson

BN_TYPES = (("analog-input", 0.4), ("analog-value", 0.3), ("binary-input", 0.2),
            ("multi-state-value", 0.1))
READ_MIX = (("read-property", 0.6), ("read-property-multiple", 0.3), ("read-range", 0.1))
DEVICE = 1
Next = Callable[[int, str, float], tuple[str, Any]]


class ProfileError(UnbrokenError, ValueError):
    """An unknown profile name."""


@dataclass(frozen=True, slots=True)
class Profile:
    """A named load: its message factory, projection and default arrivals."""

    name: str
    projection: str
    description: str
    factory: Callable[[int], Next]
    arrivals: Callable[[float, float], Arrivals]
    reads: bool = False  # has a BACnet read mix

    def messages(self, seed: int) -> Next:
        """``next(seq, phase, progress) -> (stream, payload)`` for a run seeded ``seed``."""
        return self.factory(seed)


def bn_objects(count: int = 1000) -> list[tuple[str, int]]:
    """``count`` BACnet objects in the BN-001 proportions, instances 1.. per type."""
    out: list[tuple[str, int]] = []
    for object_type, share in BN_TYPES:
        out += [(object_type, i) for i in range(1, int(round(count * share)) + 1)]
    return out[:count]


def _bn_value(object_type: str, rng: random.Random) -> Any:
    if object_type.startswith("analog"):
        return round(rng.uniform(15.0, 30.0), 2)
    if object_type.startswith("binary"):
        return rng.random() < 0.5
    return rng.randint(1, 4)


def _bn_definition(object_type: str, instance: int) -> BacnetObjectDefinition:
    analog = object_type.startswith("analog")
    return BacnetObjectDefinition(
        device_id=DEVICE, object_type=object_type, instance=instance,
        name=f"{object_type}-{instance}", units="degreesCelsius" if analog else None,
        cov_increment=0.1 if analog else None,
        state_texts=["off", "low", "mid", "high"] if object_type == "multi-state-value" else [],
        source="load")


def _bacnet(seed: int) -> Next:
    rng = random.Random(seed)
    objects = bn_objects()
    live = set(range(len(objects)))
    dead: list[int] = []

    def nxt(seq: int, phase: str, progress: float) -> tuple[str, Any]:
        if seq < len(objects):
            return "bacnet", _bn_definition(*objects[seq])
        r = rng.random()
        if r < 0.02 and len(live) > len(objects) // 2:
            i = rng.choice(tuple(live)) if len(live) < 64 else rng.randrange(len(objects))
            if i in live:
                live.discard(i)
                dead.append(i)
                return "bacnet", BacnetObjectDelete(device_id=DEVICE, object_type=objects[i][0],
                                                    instance=objects[i][1])
        if r < 0.10:
            i = dead.pop(0) if dead else rng.randrange(len(objects))
            live.add(i)
            return "bacnet", _bn_definition(*objects[i])
        i = rng.randrange(len(objects))
        while i not in live:
            i = rng.randrange(len(objects))
        kind, inst = objects[i]
        return "bacnet", BacnetValueUpdate(device_id=DEVICE, object_type=kind, instance=inst,
                                           value=_bn_value(kind, rng),
                                           status_flags=[False, False, False, False], via="load")
    return nxt


def _arrears(seed: int) -> Next:
    rng = random.Random(seed)
    registers = [rng.uniform(1000, 9000) for _ in range(1000)]

    def nxt(seq: int, phase: str, progress: float) -> tuple[str, Any]:
        a = rng.randrange(1000)
        account = f"A{a:05d}"
        r = rng.random()
        if r < 0.85:
            registers[a] += rng.uniform(0.1, 20.0)
            return f"account-{account}", MeterReading(meter_id=f"M{a:05d}", account_id=account,
                                                      register_kwh=round(registers[a], 3))
        if r < 0.93:
            return f"account-{account}", PaymentReceived(
                account_id=account, payment_id=f"P{seed}-{seq}",
                amount_minor=rng.randint(500, 20000))
        if r < 0.98:
            return f"account-{account}", AccountBalance(account_id=account,
                                                        balance_minor=rng.randint(-5000, 30000))
        return f"account-{account}", CustomerFlag(account_id=account, flag="vulnerable",
                                                  active=rng.random() < 0.7)
    return nxt


SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA")


def _trading(seed: int) -> Next:
    rng = random.Random(seed)
    prices = {s: 100.0 + 50 * i for i, s in enumerate(SYMBOLS)}

    def nxt(seq: int, phase: str, progress: float) -> tuple[str, Any]:
        symbol = SYMBOLS[seq % len(SYMBOLS)]
        if 0.60 <= progress < 0.65 and rng.random() < 0.5:  # signal flood
            return f"signals-{symbol}", TradeSignal(signal_id=f"S{seed}-{seq}", symbol=symbol,
                                                    side=rng.choice(("buy", "sell")),
                                                    quantity=float(rng.randint(1, 10)))
        base = prices[symbol]
        base *= 1 + rng.gauss(0, 0.0005)
        prices[symbol] = base
        crash = 0.85 if 0.40 <= progress < 0.50 else 1.0  # the flash-crash phase
        return f"ticks-{symbol}", MarketTick(symbol=symbol, price=round(base * crash, 4),
                                             size=float(rng.randint(1, 500)))
    return nxt


GRID_ROLES = ("solar", "wind", "gas", "gas", "residential", "residential", "residential",
              "commercial", "commercial", "industrial", "storage", "line")
GRID_NODES = 20
GRID_INTERVAL_S = 300


def _grid(seed: int) -> Next:
    rng = random.Random(seed)
    roles = [GRID_ROLES[i % len(GRID_ROLES)] for i in range(GRID_NODES)]
    start = 1_704_067_200  # 2024-01-01T00:00Z, in intervals counted from here

    def nxt(seq: int, phase: str, progress: float) -> tuple[str, Any]:
        node, interval = seq % GRID_NODES, seq // GRID_NODES
        role = roles[node]
        producing = role in ("solar", "wind", "gas")
        energy = rng.uniform(1000, 5000) * (1 if producing else -1)
        return f"grid-N{node:03d}", GridReading(
            node_id=f"N{node:03d}", role=role,
            interval_start=(start + interval * GRID_INTERVAL_S) * 1_000_000_000,
            interval_s=GRID_INTERVAL_S, energy_wh=round(energy, 1),
            power_w=round(energy * 3600 / GRID_INTERVAL_S, 1),
            frequency_hz=round(50.0 + rng.gauss(0, 0.02), 3),
            stored_wh=round(rng.uniform(0, 10000), 1) if role == "storage" else None)
    return nxt


def _steady(rate: float, seconds: float) -> Arrivals:
    return poisson(rate, seconds)


def _bursty(rate: float, seconds: float) -> Arrivals:
    # BN-002: bursts of 10x the base (500/s over 50/s) for 30 s, one a minute after 20 s.
    return bursts(rate, rate * 10, seconds, every=90.0, burst_seconds=30.0, first=20.0,
                  poisson=True)


PROFILES: dict[str, Profile] = {
    "bn001": Profile("bn001", "bacnet", "building data: 90% updates, 8% definitions, 2% deletes "
                     "over 1,000 objects; reads 60% RP, 30% RPM, 10% ReadRange",
                     _bacnet, _steady, reads=True),
    "bn002": Profile("bn002", "bacnet", "the BN-001 mix in bursts of 10x the base rate "
                     "(30 s every 90 s)", _bacnet, _bursty, reads=True),
    "arrears": Profile("arrears", "arrears", "meter readings, payments, statements, flags "
                       "over 1,000 accounts", _arrears, _steady),
    "trading": Profile("trading", "trading", "ticks of 4 symbols, a 15% flash crash (40-50% of "
                       "the run), a signal flood (60-65%)", _trading, _steady),
    "grid": Profile("grid", "grid", "20 grid nodes reporting interval energy and frequency",
                    _grid, _steady),
}


def profile(name: str) -> Profile:
    """The profile called ``name``; ``ProfileError`` lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def read_kind(rng: random.Random) -> str:
    """One draw from the BACnet read mix (60% RP, 30% RPM, 10% ReadRange)."""
    r, acc = rng.random(), 0.0
    for kind, share in READ_MIX:
        acc += share
        if r < acc:
            return kind
    return READ_MIX[-1][0]
