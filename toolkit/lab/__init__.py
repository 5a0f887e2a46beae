"""The local lab: a loopback registry, per-arch images, SSH hosts. Used by the demo and the tests."""
