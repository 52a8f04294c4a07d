"""Property testing of projections: delivery schedules drawn by Hypothesis, invariants in SQL.

``check(log, "arrears")`` searches schedules (delays, duplicates, drops,
reordering, partitions, clock skew) for runs that break an invariant and
returns a ``CheckReport`` with a shrunk counterexample per broken invariant;
``check_log(path, "arrears")`` does the same for a log file (what ``make demo``
and ``unbroken check`` call). ``schedules(events)`` and the domain log
strategies are Hypothesis strategies for your own tests; ``Schedule`` is plain
data you can save and ``apply``. Saved counterexamples replay with
``replay_counterexample(dir)``.
"""

from ._api import check_log as check_log
from ._counterexample import ReplayOutcome as ReplayOutcome
from ._counterexample import replay_counterexample as replay_counterexample
from ._evaluate import Evaluator as Evaluator
from ._examples import LogContext as LogContext
from ._invariants import Invariant as Invariant
from ._invariants import Verdict as Verdict
from ._invariants import builtin_invariants as builtin_invariants
from ._invariants import load_invariants as load_invariants
from ._logs import LogBuilder as LogBuilder
from ._logs import arrears_logs as arrears_logs
from ._logs import heartbeat_logs as heartbeat_logs
from ._logs import trading_logs as trading_logs
from ._report import CheckReport as CheckReport
from ._report import Counterexample as Counterexample
from ._report import InvariantResult as InvariantResult
from ._schedules import IDENTITY as IDENTITY
from ._schedules import Delay as Delay
from ._schedules import DropEvent as DropEvent
from ._schedules import Duplicate as Duplicate
from ._schedules import Partition as Partition
from ._schedules import Reorder as Reorder
from ._schedules import Schedule as Schedule
from ._schedules import Skew as Skew
from ._search import check as check
from ._spec import ProjectionSpecError as ProjectionSpecError
from ._spec import factory_of as factory_of
from ._strategies import SchedulePolicy as SchedulePolicy
from ._strategies import schedules as schedules
from ._timeline import render_timeline as render_timeline
from ._trace import Trace as Trace

__all__ = [name for name in dir() if not name.startswith("_")]
