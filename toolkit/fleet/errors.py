"""The errors that are one host's failure (reported for that host, the others go on), as
opposed to bugs, which propagate. Imported when a fleet command runs, not at start-up."""

from __future__ import annotations

from .connect import ConnectError
from .facts import FactsError
from .gitlab_host import RunnerHostError
from .gitlab_runner import GitLabRunnerError
from .jenkins_agent import JenkinsAgentError
from .plan import PlanError
from .provision import ApplyError

HOST_ERRORS: tuple[type[Exception], ...] = (
    ConnectError,
    FactsError,
    PlanError,
    ApplyError,
    RunnerHostError,
    GitLabRunnerError,
    JenkinsAgentError,
    ValueError,
)
