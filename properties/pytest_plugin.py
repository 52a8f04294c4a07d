"""pytest plugin for unbroken (kept light to import)."""

from __future__ import annotations
