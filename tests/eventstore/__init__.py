"""Tests of the event store: one contract suite run against every backend."""
