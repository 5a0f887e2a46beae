"""The errors that are one host's failure (reported for that host, the others go on), as
opposed to bugs, which propagate. Imported when a fleet command runs, not at start-up.

The GitLab and Jenkins errors are defined here, not beside python-gitlab and jenkinsapi in
gitlab_runner.py and jenkins_agent.py (which export them too): this tuple is needed before the
first host is connected, and the hosts' SSH work starts before those libraries are imported.
"""

from __future__ import annotations

from .connect import ConnectError
from .facts import FactsError
from .gitlab_host import RunnerHostError
from .merge_tool import MergeToolError
from .plan import PlanError
from .provision import ApplyError


class GitLabRunnerError(RuntimeError):
    """A GitLab runner call failed or could not be authenticated; names the server and step."""


class JenkinsAgentError(RuntimeError):
    """A Jenkins node operation failed; the message names the node, what and why."""


HOST_ERRORS: tuple[type[Exception], ...] = (
    ConnectError,
    FactsError,
    PlanError,
    ApplyError,
    RunnerHostError,
    MergeToolError,
    GitLabRunnerError,
    JenkinsAgentError,
    ValueError,
)
