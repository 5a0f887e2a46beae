"""ServerLookups and for_each_host(meanwhile=): the hosts' work starts before the server sides
are set up, each host's server state is looked up once, off the host's thread, and a set-up
that fails stops every host where it would have needed the servers."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from toolkit.fleet.parallel import for_each_host
from toolkit.fleet.plan import NodeState, RunnerState
from toolkit.fleet.provision import ServerLookups, Servers, ServersUnavailable
from toolkit.inventory import Host, SshSettings


def host(name: str, *roles: str) -> Host:
    return Host(name, "127.0.0.1", roles or ("gitlab-runner", "jenkins-agent"), SshSettings())


class FakeRunners:
    def __init__(self) -> None:
        self.found: Counter[str] = Counter()
        self.threads: set[str] = set()

    def find(self, name: str) -> RunnerState:
        self.found[name] += 1
        self.threads.add(threading.current_thread().name)
        return RunnerState(
            id=len(self.found), description=name, tags=(), run_untagged=False, locked=True
        )


class FakeNodes:
    def __init__(self) -> None:
        self.snapshots = 0
        self.found: Counter[str] = Counter()

    def snapshot(self) -> dict[str, bool]:
        self.snapshots += 1
        return {"a": True}

    def find(self, name: str, *, listing: dict[str, bool]) -> NodeState | None:
        self.found[name] += 1
        if name not in listing:
            return None
        return NodeState(name, ("amd64",), 2, "/r", "c", online=listing[name])


def test_every_host_is_looked_up_once_in_the_background() -> None:
    runners, nodes = FakeRunners(), FakeNodes()
    servers = Servers(runners, nodes)  # type: ignore[arg-type]
    hosts = [host("a"), host("b"), host("c", "gitlab-runner")]
    with ServerLookups() as lookups:
        lookups.start(servers, hosts, workers=2)
        states = {h.name: lookups.state(h) for h in hosts}
        assert lookups.servers() is servers
    assert runners.found == Counter({"a": 1, "b": 1, "c": 1})
    assert nodes.found == Counter({"a": 1, "b": 1})  # c has no jenkins-agent role
    assert all(name.startswith("lookup") for name in runners.threads)
    assert states["a"].node is not None and states["a"].node.online
    assert states["b"].node is None and states["c"].node is None


def test_servers_set_up_already_are_looked_up_when_asked() -> None:
    runners = FakeRunners()
    lookups = ServerLookups.of(Servers(runners))  # type: ignore[arg-type]
    assert runners.found == Counter()
    state = lookups.state(host("a"))
    assert state.runner is not None and state.node is None
    assert runners.threads == {threading.current_thread().name}


def test_a_failed_set_up_stops_whoever_waits_for_the_servers() -> None:
    lookups = ServerLookups()
    lookups.fail()
    with pytest.raises(ServersUnavailable):
        lookups.servers()
    with pytest.raises(ServersUnavailable):
        lookups.state(host("a"))


def test_meanwhile_runs_while_the_hosts_work_and_they_wait_for_it() -> None:
    ready = threading.Event()
    order: list[str] = []

    def work(h: Host) -> str:
        order.append(f"{h.name} started")
        assert ready.wait(timeout=30)
        return h.name

    def meanwhile() -> None:
        order.append("meanwhile")
        ready.set()

    outcomes = for_each_host([host("a"), host("b")], work, workers=2, meanwhile=meanwhile)
    assert [o.value for o in outcomes] == ["a", "b"]
    assert "meanwhile" in order and len(order) == 3


def test_when_meanwhile_fails_its_error_propagates_and_no_host_is_reported() -> None:
    lookups = ServerLookups()
    done: list[object] = []

    def work(h: Host) -> str:
        lookups.servers()  # raises ServersUnavailable once the set-up failed
        return h.name

    def meanwhile() -> None:
        lookups.fail()
        raise RuntimeError("set-up failed")

    with pytest.raises(RuntimeError, match="set-up failed"):
        for_each_host([host("a"), host("b")], work, on_done=done.append, meanwhile=meanwhile)
    assert done == []
