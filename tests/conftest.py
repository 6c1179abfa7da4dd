"""Shared test configuration: GPU-only tests are skipped where JAX has no GPU (CI, this machine)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    import jax

    if jax.default_backend() == "gpu":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run through the device tool")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
