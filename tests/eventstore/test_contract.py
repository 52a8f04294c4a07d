"""Runs the whole contract suite (contract.py) on each backend of the ``backend`` fixture."""

from .contract import StoreContract


class TestStoreContract(StoreContract):
    """The contract on memory://, embedded:// and (when configured) kurrentdb://."""
