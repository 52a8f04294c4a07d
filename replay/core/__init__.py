"""The replay runner and what surrounds it: virtual time, timers, snapshots, comparisons.

``run`` delivers events through a projection in virtual time (the
``VirtualClock`` inside each ``ReplayContext``) and hands rows to the trace;
``check_determinism`` and ``diff_projections`` compare replays; saved runs
(``write_recorded``/``read_recorded``) replay delivery for delivery;
``load_projection`` turns a name or ``file.py:factory`` into a projection;
``watching`` puts a per-step time limit (``EventTimeout``) and progress
reports (``Where``) on the runs of a block.
"""

from ._clock import VirtualClock as VirtualClock
from ._context import ReplayContext as ReplayContext
from ._determinism import DeterminismReport as DeterminismReport
from ._determinism import Mismatch as Mismatch
from ._determinism import check_determinism as check_determinism
from ._diff import DiffReport as DiffReport
from ._diff import diff_projections as diff_projections
from ._pacing import Pacing as Pacing
from ._recorded import SAVED_RUN_EXIT_CODES as SAVED_RUN_EXIT_CODES
from ._recorded import SavedRun as SavedRun
from ._recorded import read_recorded as read_recorded
from ._recorded import recorded_deliveries as recorded_deliveries
from ._recorded import saved_file as saved_file
from ._recorded import write_recorded as write_recorded
from ._runner import RunResult as RunResult
from ._runner import run as run
from ._snapshot import Snapshots as Snapshots
from ._spec import ProjectionSpecError as ProjectionSpecError
from ._spec import UntrustedProjectionError as UntrustedProjectionError
from ._spec import load_projection as load_projection
from ._spec import portable_spec as portable_spec
from ._spec import saved_projection as saved_projection
from ._watchdog import EventTimeout as EventTimeout
from ._watchdog import Where as Where
from ._watchdog import watching as watching

__all__ = [
    "SAVED_RUN_EXIT_CODES", "SavedRun", "UntrustedProjectionError", "portable_spec", "saved_file",
    "saved_projection", "DeterminismReport", "DiffReport", "EventTimeout", "Mismatch", "Pacing", "ProjectionSpecError",
    "ReplayContext", "RunResult", "Snapshots", "VirtualClock", "Where", "check_determinism",
    "diff_projections", "load_projection", "read_recorded", "recorded_deliveries", "run",
    "watching", "write_recorded",
]
