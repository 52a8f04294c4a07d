"""Traces: the Parquet tables a run leaves behind, and read-only SQL over them.

The writer (``TraceWriter``) streams row groups and publishes each table
atomically; ``load_trace`` reads a trace back; ``open_trace``/``query`` run
one read-only SELECT over trace directories in a DuckDB sandbox. The tables
and their columns are declared once, in ``_schema`` (``TABLES``), with what each
column means (``schema_text``/``schema_markdown``: ``unbroken query --help`` and
docs/trace-schema.md are generated from them).
"""

from ._output import write_result as write_result
from ._query import QueryError as QueryError
from ._query import QueryRefused as QueryRefused
from ._query import QueryTimeout as QueryTimeout
from ._query import Sandbox as Sandbox
from ._query import TraceConnection as TraceConnection
from ._query import open_trace as open_trace
from ._query import query as query
from ._schema import TABLES as TABLES
from ._schema import refresh_doc as refresh_schema_doc
from ._schema import schema_markdown as schema_markdown
from ._schema import schema_text as schema_text
from ._writer import DeliveryColumns as DeliveryColumns
from ._writer import TraceWriter as TraceWriter
from ._writer import arrow_batch as arrow_batch
from ._writer import arrow_schema as arrow_schema
from ._writer import columns as columns
from ._writer import empty_frame as empty_frame
from ._writer import load_trace as load_trace
from ._writer import polars_schema as polars_schema

__all__ = [
    "TABLES", "DeliveryColumns", "QueryError", "QueryRefused", "QueryTimeout", "Sandbox", "TraceConnection", "TraceWriter",
    "arrow_batch", "arrow_schema", "columns", "empty_frame", "load_trace", "open_trace",
    "polars_schema", "query", "refresh_schema_doc", "schema_markdown", "schema_text", "write_result",
]
