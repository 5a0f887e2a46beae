"""Facts of a host over SSH: one connection, one command (toolkit.fleet.facts)."""

from __future__ import annotations

from ..inventory import Host
from .connect import connect, run_script
from .facts import FACTS_SCRIPT, FactsError, HostFacts, parse_facts


def gather_facts(host: Host) -> HostFacts:
    connection = connect(host)
    try:
        result = run_script(
            connection, FACTS_SCRIPT, timeout=host.ssh.command_timeout, host=host.name
        )
    finally:
        connection.close()
    if not result.ok:
        raise FactsError(
            f"{host.name}: facts command exited {result.exit_code}: {result.stderr.strip()[-300:]}"
        )
    return parse_facts(result.stdout, host=host.name)
