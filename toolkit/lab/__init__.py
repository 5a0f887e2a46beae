"""The local lab: a loopback registry, per-arch images, SSH hosts (demo and tests)."""
