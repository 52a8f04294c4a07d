"""Hostile input at the CLI and the Python API (EF-002): every case a test, so none comes back."""
