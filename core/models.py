"""Where `core.retrieve` finds `dual_split` until it reads the embedder table (`core.embedders`) itself."""

from __future__ import annotations

from core.embedders import dual_split

__all__ = ["dual_split"]
