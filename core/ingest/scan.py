"""Scanning ingest roots: the files that pass the filters (kind, size, hidden, include/exclude and
`.gitignore` rules), and the problems met on the way."""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import ConfigError
from core.loaders import SNIFF_BYTES, kind_of, looks_like_text
from core.results import FileProblem

VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", ".jj"})  # never indexed, even with --hidden


@dataclass(frozen=True)
class Candidate:
    """A file that passed the filters, with the stat its record is compared to."""

    abs_path: Path
    rel_path: str
    root: Path
    kind: str
    size: int
    mtime_ns: int
    explicit: bool = False  # named on the command line: never skipped without a word


@dataclass
class ScanLog:
    """What a scan notes besides the files it yields: problems to report and files it ignored."""

    problems: list[FileProblem] = field(default_factory=list)
    ignored: int = 0


def resolve_roots(paths: Sequence[Path]) -> list[Path]:
    """Absolute, existing ingest roots; a missing path is a usage error."""
    roots: list[Path] = []
    for path in paths:
        if not path.exists():
            hint = "check the path" if not path.is_symlink() else "the link points nowhere"
            raise ConfigError(f"no such file or folder: {path}", hint=hint)
        resolved = path.resolve()
        if resolved not in roots:
            roots.append(resolved)
    # A root inside another root adds nothing but ambiguity: keep the outer one.
    return [r for r in roots if not any(r != o and r.is_relative_to(o) for o in roots)]


def scan(root: Path, settings: Settings, log: ScanLog) -> Iterator[Candidate | Path]:
    """Files under `root` that pass the filters; a bare Path marks a file seen but not readable."""
    cfg = settings.ingest
    if root.is_file():
        kind = kind_of(root)
        if kind is None or (kind == "sniff" and not _sniff(root)):  # named explicitly: say why not
            log.problems.append(FileProblem(root.name, _no_reader(root, known=kind is None)))
            yield root
            return
        candidate = _candidate(root, root.name, root.parent, cfg.max_file_mb, log)
        if candidate is not None:
            yield replace(candidate, explicit=True)
        else:
            yield root
        return
    gitignore = _GitIgnore(root, log) if cfg.gitignore else None

    def on_error(err: OSError) -> None:
        where = Path(err.filename) if err.filename else root
        log.problems.append(file_problem(_printable(relative(where, root)), err))

    for folder, dirs, files in os.walk(root, onerror=on_error):
        here = Path(folder)
        if gitignore is not None:
            gitignore.load(here)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in VCS_DIRS
            and (cfg.hidden or not d.startswith("."))
            and not (gitignore is not None and gitignore.ignores(here / d, is_dir=True))
        )
        for name in sorted(files):
            path = here / name
            rel = relative(path, root)
            if not cfg.hidden and name.startswith("."):
                continue
            if gitignore is not None and gitignore.ignores(path, is_dir=False):
                continue
            if cfg.include and not any(_glob(rel, pattern) for pattern in cfg.include):
                continue
            if any(_glob(rel, pattern) for pattern in cfg.exclude):
                continue
            candidate = _candidate(path, rel, root, cfg.max_file_mb, log)
            yield candidate if candidate is not None else path


class _GitIgnore:
    """`.gitignore` files as git reads them: every folder's file from the repository top down to
    the path, the deepest decisive pattern winning (so `!keep.log` below re-includes)."""

    def __init__(self, root: Path, log: ScanLog) -> None:
        self.log = log
        self.root = root
        self.specs: dict[Path, Any] = {}
        self._chains: dict[Path, list[tuple[str, Any]]] = {}
        top = next((p for p in (root, *root.parents) if (p / ".git").exists()), root)
        for folder in reversed((root, *root.parents)):
            if is_under(folder, top) and folder != root:
                self.load(folder)

    def load(self, folder: Path) -> None:
        import pathspec

        path = folder / ".gitignore"
        if not path.is_file():
            return
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            self.log.problems.append(file_problem(_printable(relative(path, self.root)), err))
            return
        self.specs[folder] = pathspec.GitIgnoreSpec.from_lines(lines)
        self._chains.clear()

    def ignores(self, path: Path, *, is_dir: bool) -> bool:
        text = path.as_posix()
        for folder, spec in self._chain(path.parent):  # deepest first
            rel = text[len(folder) + 1 :] + ("/" if is_dir else "")
            include = spec.check_file(rel).include
            if include is not None:
                return bool(include)
        return False

    def _chain(self, folder: Path) -> list[tuple[str, Any]]:
        """The specs that apply inside `folder`, deepest first (computed once per folder)."""
        chain = self._chains.get(folder)
        if chain is None:
            chain = [
                (f.as_posix(), self.specs[f]) for f in (folder, *folder.parents) if f in self.specs
            ]
            self._chains[folder] = chain
        return chain


def _candidate(path: Path, rel: str, root: Path, max_mb: float, log: ScanLog) -> Candidate | None:
    kind = kind_of(path)
    if kind is None:
        log.ignored += 1
        return None
    if _printable(str(path)) != str(path):
        # A name in a legacy encoding (GBK from a Windows zip, ...): the index stores paths as
        # UTF-8 text, so the file is reported with its bytes escaped and left for renaming.
        log.problems.append(FileProblem(_printable(rel), "file name is not valid UTF-8"))
        return None
    try:
        info = path.stat()
    except FileNotFoundError:
        reason = "broken symbolic link" if path.is_symlink() else "file vanished while scanning"
        log.problems.append(FileProblem(rel, reason))
        return None
    except OSError as err:
        loop = err.errno == errno.ELOOP
        log.problems.append(
            FileProblem(rel, "symbolic link loop") if loop else file_problem(rel, err)
        )
        return None
    if not stat.S_ISREG(info.st_mode):
        log.ignored += 1
        return None
    if info.st_size > max_mb * 1024 * 1024:
        log.problems.append(
            FileProblem(rel, f"larger than {max_mb:g} MB (raise [ingest].max_file_mb to read it)")
        )
        return None
    if not os.access(path, os.R_OK):
        log.problems.append(FileProblem(rel, "permission denied"))
        return None
    if kind == "sniff" and not _sniff(path):
        log.ignored += 1
        return None
    return Candidate(path.absolute(), rel, root, kind, info.st_size, info.st_mtime_ns)


def _no_reader(path: Path, *, known: bool) -> str:
    """Why a binary file named on the command line is not read."""
    if not known:
        return "binary content, and no reader for its type (`kb ask --help` lists the types)"
    what = path.suffix.lower() or path.name
    return f"kb has no reader for {what} files, a binary format (`kb ask --help` lists the types)"


def _printable(name: str) -> str:
    """A file name as UTF-8 text; bytes that are not UTF-8 appear as `\\xb1` escapes."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _sniff(path: Path) -> bool:
    """`looks_like_text` on a file's first bytes; a file that cannot be read is left to the reader."""
    try:
        with path.open("rb") as handle:
            return looks_like_text(handle.read(SNIFF_BYTES))
    except OSError:
        return True


def _glob(rel: str, pattern: str) -> bool:
    """A glob against the root-relative path, or against the file name when it has no slash."""
    if "/" not in pattern:
        return fnmatch.fnmatch(rel.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatch(rel, pattern)


def is_under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or path.name
    except ValueError:
        return str(path)


def file_problem(rel: str, err: OSError) -> FileProblem:
    if isinstance(err, PermissionError):
        return FileProblem(rel, "permission denied")
    return FileProblem(rel, err.strerror or str(err))
