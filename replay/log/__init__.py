"""Production logs in and out: JSON Lines, CSV and Parquet.

``read_log`` replays a file directly; ``import_log`` appends it to a store;
``export_log`` writes a store back out in a form ``import_log`` reads. Every
bad line goes, whole, to a quarantine file with its line number and reason
(``Rejection``); a ``LogMapping`` names the fields of logs in other shapes.
"""

from ._export import export_log as export_log
from ._import import DEFAULT_BATCH as DEFAULT_IMPORT_BATCH
from ._import import import_log as import_log
from ._io import LogReader as LogReader
from ._io import read_log as read_log
from ._mapping import LogError as LogError
from ._mapping import LogMapping as LogMapping
from ._mapping import load_mapping as load_mapping
from ._parse import ImportReport as ImportReport
from ._reject import Rejection as Rejection

__all__ = [
    "DEFAULT_IMPORT_BATCH", "ImportReport", "LogError", "LogMapping", "LogReader", "Rejection",
    "export_log", "import_log", "load_mapping", "read_log",
]
