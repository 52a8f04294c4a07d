"""The KurrentDB backend's boundary, checked without a server: URIs and unreachable servers.

The full contract suite runs against KurrentDB when UNBROKEN_KURRENTDB_URI is set
(see backends.py); no KurrentDB server can be installed on this machine.
"""

from __future__ import annotations

import socket

import pytest

from eventstore import NewEvent, StoreUnavailable, open_store
from eventstore.kurrentdb import esdb_uri


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("kurrentdb://127.0.0.1:2113?tls=false", "esdb://127.0.0.1:2113?Tls=false"),
        ("kurrentdb://db1:2113,db2:2113?tls=true", "esdb://db1:2113,db2:2113?Tls=true"),
    ],
)
def test_kurrentdb_uris_map_to_esdbclient_uris(ours: str, theirs: str) -> None:
    assert esdb_uri(ours) == theirs


def test_an_unreachable_server_raises_store_unavailable_naming_it() -> None:
    uri = f"kurrentdb://127.0.0.1:{_closed_port()}?tls=false"
    with open_store(uri) as store:
        with pytest.raises(StoreUnavailable, match=r"KurrentDB at kurrentdb://127\.0\.0\.1:\d+.*unreachable"):
            store.append("s", [NewEvent("T", b"x")])
        with pytest.raises(StoreUnavailable):
            store.last_position()
