"""Replay recorded events through projections in virtual time, and trace every step.

``run(deliveries, projection)`` is the entry point; ``deliveries_of(events)``
is the identity schedule. The parts, each a sub-package with its own face:

- ``replay.core``: the runner, virtual clock and timers, snapshots
  (``Snapshots``), pacing (``Pacing``), determinism check, diff of two
  projections, saved runs, projection loading;
- ``replay.log``: production logs in and out (``import_log``,
  ``export_log``, ``read_log``), with quarantine of bad lines;
- ``replay.trace``: the Parquet trace tables (``TraceWriter``,
  ``load_trace``) and the read-only SQL sandbox (``open_trace``, ``query``);
- ``replay.cli``: the ``replay``, ``diff``, ``import``, ``export`` and
  ``query`` commands.

Every error replay raises is a ``ReplayError`` or one of the named errors
below, all under ``eventstore.UnbrokenError``. See docs/architecture.md.
"""

from ._delivery import Delivery as Delivery
from ._delivery import Drop as Drop
from ._delivery import IdentitySchedule as IdentitySchedule
from ._delivery import deliveries_of as deliveries_of
from ._errors import ReplayError as ReplayError
from .core import DeterminismReport as DeterminismReport
from .core import DiffReport as DiffReport
from .core import Mismatch as Mismatch
from .core import Pacing as Pacing
from .core import ProjectionSpecError as ProjectionSpecError
from .core import ReplayContext as ReplayContext
from .core import RunResult as RunResult
from .core import Snapshots as Snapshots
from .core import VirtualClock as VirtualClock
from .core import check_determinism as check_determinism
from .core import diff_projections as diff_projections
from .core import load_projection as load_projection
from .core import read_recorded as read_recorded
from .core import recorded_deliveries as recorded_deliveries
from .core import run as run
from .core import write_recorded as write_recorded
from .log import ImportReport as ImportReport
from .log import LogError as LogError
from .log import LogMapping as LogMapping
from .log import LogReader as LogReader
from .log import Rejection as Rejection
from .log import export_log as export_log
from .log import import_log as import_log
from .log import load_mapping as load_mapping
from .log import read_log as read_log
from .trace import QueryError as QueryError
from .trace import QueryRefused as QueryRefused
from .trace import TraceConnection as TraceConnection
from .trace import TraceWriter as TraceWriter
from .trace import empty_frame as empty_frame
from .trace import load_trace as load_trace
from .trace import open_trace as open_trace
from .trace import query as query

__all__ = [
    "Delivery", "DeterminismReport", "DiffReport", "Drop", "IdentitySchedule", "ImportReport",
    "LogError", "LogMapping", "LogReader", "Mismatch", "Pacing", "ProjectionSpecError",
    "QueryError", "QueryRefused", "Rejection", "ReplayContext", "ReplayError", "RunResult",
    "Snapshots", "TraceConnection", "TraceWriter", "VirtualClock", "check_determinism",
    "deliveries_of", "diff_projections", "empty_frame", "export_log", "import_log",
    "load_mapping", "load_projection", "load_trace", "open_trace", "query", "read_log",
    "read_recorded", "recorded_deliveries", "run", "write_recorded",
]
