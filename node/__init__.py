"""The fedchain peer: local training, update exchange over IPFS, the round loop, the CLI."""

from node.errors import NodeError

__all__ = ["NodeError"]
