"""The dosing projection's internals; the public names are re-exported by ``projections``."""
