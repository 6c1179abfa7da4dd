"""The one error hierarchy of tlir.

Every failure a user can cause is a `TlirError`; the subclass says which layer refused. Messages say
what was checked, what was expected and what was found, and quote the spec, node or label.
"""

from __future__ import annotations


class TlirError(Exception):
    """Base class of every error tlir raises on bad input."""


class SpecError(TlirError):
    """A spec string is malformed (grammar), independent of any shape."""


class GraphError(TlirError):
    """A graph is malformed: unknown tensors, cycles, double writes, shape mismatches, bad text
    or JSON."""


class ConfigError(TlirError):
    """A builder configuration is invalid (for example d_model not a multiple of n_heads)."""


class PassError(TlirError):
    """A pass refused a graph, or produced one that does not verify."""


class LoweringError(TlirError):
    """A backend cannot lower or run a graph."""


class SpecWarning(UserWarning):
    """A spec was accepted after a repair (for example the seed's `-:` typo for `->`)."""
