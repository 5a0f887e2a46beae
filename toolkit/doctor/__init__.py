"""`archfleet doctor`: one preflight over the inventory, its hosts and its servers.

Every kind of check has a module of its own, and in each the evaluation is pure — a probe's
findings (a frozen dataclass) in, `Check` rows out — while `probe.py` holds all the I/O (SSH,
HTTP) and `run.py` wires the two together:

    checks.py    the Check row (check, target, status ok/warn/blocker, detail, fix), exit code
    host.py      SSH reachability (naming the hop), sudo, arch, builder, the agents' Java,
                 merge tool
    gitlab.py    GitLab reachable, its version (>= 16.11), the token's own scopes, its
                 user's right to create the runners (admin, group Owner, project Maintainer)
    jenkins.py   Jenkins reachable, its version, plugins, the agents' SSH credentials id
    tool_image.py  the GitLab component's tool image (gitlab.tool_image) in its registry:
                 there, and with the platforms of the runners
    probe.py     the I/O: one SSH command per host (the facts script), bounded HTTP GETs,
                 one manifest GET for the tool image
    run.py       hosts in parallel, the servers meanwhile; the rows in a stable order
    output.py    the table and the JSON
"""
