"""Replay recorded events through projections in virtual time, and trace every step.

``run(deliveries, projection)`` is the entry point; ``deliveries_of(events)``
is the identity schedule. Traces are Parquet tables (``load_trace`` reads one
back); ``check_determinism`` and ``diff_projections`` compare replays.
"""

from ._clock import VirtualClock as VirtualClock
from ._context import ReplayContext as ReplayContext
from ._delivery import Delivery as Delivery
from ._delivery import Drop as Drop
from ._delivery import IdentitySchedule as IdentitySchedule
from ._delivery import deliveries_of as deliveries_of
from ._determinism import DeterminismReport as DeterminismReport
from ._determinism import Mismatch as Mismatch
from ._determinism import check_determinism as check_determinism
from ._diff import DiffReport as DiffReport
from ._diff import diff_projections as diff_projections
from ._errors import ReplayError as ReplayError
from ._logexport import export_log as export_log
from ._logimport import import_log as import_log
from ._logio import ImportReport as ImportReport
from ._logio import LogReader as LogReader
from ._logio import read_log as read_log
from ._logmap import LogError as LogError
from ._logmap import LogMapping as LogMapping
from ._logmap import load_mapping as load_mapping
from ._logreject import Rejection as Rejection
from ._query import QueryError as QueryError
from ._query import QueryRefused as QueryRefused
from ._query import TraceConnection as TraceConnection
from ._query import open_trace as open_trace
from ._query import query as query
from ._recorded import read_recorded as read_recorded
from ._recorded import recorded_deliveries as recorded_deliveries
from ._recorded import write_recorded as write_recorded
from ._runner import RunResult as RunResult
from ._runner import run as run
from ._spec import ProjectionSpecError as ProjectionSpecError
from ._spec import load_projection as load_projection
from ._trace import TraceWriter as TraceWriter
from ._trace import empty_frame as empty_frame
from ._trace import load_trace as load_trace
