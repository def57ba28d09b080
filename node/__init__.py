"""The fedchain peer: local training, update exchange over IPFS, the round loop, the CLI."""

from node.errors import NodeError

__all__ = ["NodeError", "version"]


def version() -> str:
    """The installed fedchain's version (a checkout that was never installed says so)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("fedchain")
    except PackageNotFoundError:
        return "unknown (not installed)"
