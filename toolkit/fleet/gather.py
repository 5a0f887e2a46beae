"""Facts of a host over SSH: one connection, one command (toolkit.fleet.facts)."""

from __future__ import annotations

from fabric import Connection

from ..inventory import Host
from .connect import connect, run_script
from .facts import FactsError, HostFacts, facts_script, parse_facts


def read_facts(connection: Connection, host: Host) -> HostFacts:
    """The facts over an open connection (provisioning reuses it for the changes)."""
    script = facts_script(python=host.has_role("merge-tool"))
    result = run_script(connection, script, timeout=host.ssh.command_timeout, host=host.name)
    if not result.ok:
        raise FactsError(
            f"{host.name}: facts command exited {result.exit_code}: {result.stderr.strip()[-300:]}"
        )
    return parse_facts(result.stdout, host=host.name)


def gather_facts(host: Host) -> HostFacts:
    connection = connect(host)
    try:
        return read_facts(connection, host)
    finally:
        connection.close()
