"""Copying a knowledge base folder in tests without writing out its holes.

The embedded store preallocates its files (32 MB each for the write-ahead log, vectors and
payloads) as sparse files: the sample knowledge base takes ~1 MB on disk. `shutil.copytree`
writes every hole out as zeros (~200 MB per copy), which filled the disk of a machine running the
suite a few times; this copy keeps them holes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_BLOCK = 1 << 20


def copy_kb(source: Path, target: Path) -> Path:
    """`shutil.copytree(source, target)`, each file's holes left unwritten."""
    return Path(shutil.copytree(source, target, copy_function=_copy_sparse))


def _copy_sparse(src: str, dst: str, *, follow_symlinks: bool = True) -> str:
    with open(src, "rb") as reader, open(dst, "wb") as writer:
        size = os.fstat(reader.fileno()).st_size
        position = 0
        while position < size:
            try:
                start = os.lseek(reader.fileno(), position, os.SEEK_DATA)
            except OSError:  # no data after `position`: the rest is a hole
                break
            end = os.lseek(reader.fileno(), start, os.SEEK_HOLE)
            reader.seek(start)
            writer.seek(start)
            left = end - start
            while left > 0:
                block = reader.read(min(left, _BLOCK))
                if not block:
                    break
                writer.write(block)
                left -= len(block)
            position = end
        writer.truncate(size)
    shutil.copystat(src, dst, follow_symlinks=follow_symlinks)
    return dst
