"""Syscall-level fault injection (an LD_PRELOAD library): not built yet.

This package will hold the C sources, their build and a thin Python wrapper;
it imports nothing of unbroken's (see docs/architecture.md).
"""

__all__: list[str] = []
