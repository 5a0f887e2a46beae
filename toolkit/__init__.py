"""archfleet: native multi-architecture container builds on the CI systems you already run."""

__version__ = "0.1.0"
