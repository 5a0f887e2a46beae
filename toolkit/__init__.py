"""archfleet: native multi-architecture container builds on the CI systems you already run."""

# The one version of archfleet: pyproject.toml reads it (setuptools dynamic attr); the CLI, the
# component, the Jenkins library and the tool image carry it.
__version__ = "0.1.0"
