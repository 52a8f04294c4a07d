"""Broker adapters: exactly-once ingest from NATS JetStream, Redis Streams and RabbitMQ
(faststream), and the outbox that publishes decisions with external effect.

- ``messages``: turning a broker message into an event (or a ``Rejected`` one) with an id
  derived from the message id, and appending a batch durably and idempotently.
- ``nats``, ``redis``, ``rabbit``: the applications (faststream brokers; the NATS ingest
  reads its pull consumer through nats-py, see ``nats_app``).
- ``outbox``: the outbox worker (the store is the durable local buffer).
- ``cli``: ``unbroken ingest nats|redis|rabbit`` and ``unbroken outbox nats``.

See docs/trading.md.
"""

from __future__ import annotations

__all__: list[str] = []
