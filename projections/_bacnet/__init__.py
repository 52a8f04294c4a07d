"""The BACnet object-registry projection's internals; public names are re-exported by ``projections``."""
