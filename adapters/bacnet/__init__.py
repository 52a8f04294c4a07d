"""BACnet adapter: a recording client (COV and polling -> events) and an event server.

- ``adapters.bacnet.recorder``: subscribes to change of value on BACnet/IP devices,
  polls objects without COV, records definitions, updates and gaps (``Fault``).
- ``adapters.bacnet.server``: a BACnet/IP device materialized from the store by the
  ``bacnet`` object-registry projection, following the store live.
- ``adapters.bacnet.simulator``: simulated devices for tests and demos.
- ``adapters.bacnet.cli``: ``unbroken ingest bacnet``, ``unbroken serve bacnet``,
  ``unbroken simulate bacnet``.

See docs/bacnet.md. Import only what you use: the server process must stay small.
"""

__all__: list[str] = []
