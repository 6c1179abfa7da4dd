"""Shared test configuration.

GPU-only tests are skipped where JAX has no GPU (CI, this machine). Float32 tests mean float32:
on a GPU, JAX's default matmul precision would be TF32, so the session asks for "highest".
"""

from __future__ import annotations

import jax
import pytest

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any("gpu" in item.keywords for item in items):
        return
    if jax.default_backend() == "gpu":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: run through the device tool")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
