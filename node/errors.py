"""The node's exception root."""

from __future__ import annotations

__all__ = ["NodeError"]


class NodeError(Exception):
    """Root of everything the node raises on purpose."""
