"""The data directory is private: created 0700, its files 0600, and a loose one refused.

The data directory holds the store (approvals' arguments, intents, the audit chain), the signing
keys and the secrets, so no other user of the machine may read it, list it or even traverse it.
Every directory tether creates there is made ``0700`` and every file ``0600`` by the mode given at
creation (never a process-wide ``umask``, which other threads would see too); SQLite gives its
``-wal`` and ``-shm`` files the mode of the database file, so creating ``tether.db`` ``0600``
before SQLite opens it covers them.

A directory that already exists with any group or other permission bit (``0755``, ``0711``...)
is refused with the command that fixes it, unless the operator asked for it to be tightened
(``tether serve --fix-permissions``): then the directory becomes ``0700`` and everything in it
owned by this user ``0700`` (directories) or ``0600`` (files). Symbolic links are never followed.

Standard library only: adapters (keys, secrets, approvers, pins) and entry points both use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Final

from tether.core.errors import ConfigurationError

PRIVATE_DIR: Final = 0o700
PRIVATE_FILE: Final = 0o600
_OTHERS: Final = 0o077


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parent, each ``0700``; an existing one is left as it is."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.mkdir(directory, PRIVATE_DIR)
    return path


def prepare_data_dir(path: Path, *, fix_permissions: bool = False) -> Path:
    """The data directory at ``path``, created ``0700`` if missing.

    An existing directory open to other users raises ``ConfigurationError`` saying how to fix it,
    or with ``fix_permissions`` is tightened with what it holds (see the module docstring).
    """
    if not path.exists():
        return make_private_dir(path)
    try:
        info = path.stat()
    except OSError as error:
        raise ConfigurationError(
            f"cannot read the data directory {path}: {error.strerror}"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"the data directory {path} is not a directory")
    mode = stat.S_IMODE(info.st_mode)
    if os.name != "posix" or not mode & _OTHERS:
        return path
    if not fix_permissions:
        raise ConfigurationError(
            f"the data directory {path} is open to other users (mode {mode:04o}) and holds "
            f"keys, approvals and the audit log; run: chmod 700 {path} "
            "(or start tether serve with --fix-permissions to tighten it and its files)"
        )
    try:
        tighten(path)
    except OSError as error:
        raise ConfigurationError(
            f"cannot tighten the data directory {path} ({error.strerror}); "
            f"run as its owner: chmod -R go-rwx {path}"
        ) from None
    return path


def tighten(path: Path) -> None:
    """Make ``path`` ``0700`` and what it holds (owned by this user) ``0700`` / ``0600``."""
    os.chmod(path, PRIVATE_DIR, follow_symlinks=False)
    me = os.geteuid()
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            entry = Path(root) / name
            try:
                info = entry.lstat()
            except FileNotFoundError:
                continue
            if info.st_uid != me or stat.S_ISLNK(info.st_mode):
                continue
            mode = stat.S_IMODE(info.st_mode)
            if mode & _OTHERS:
                os.chmod(entry, mode & ~_OTHERS)


def create_private_file(path: Path) -> Path:
    """Create an empty ``path`` ``0600`` unless it exists; its content is left to the caller."""
    make_private_dir(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a temporary file renamed over it), ``0600``."""
    make_private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def hold_first_free(directory: Path, names: Iterable[str]) -> tuple[str, BinaryIO]:
    """The first of ``names`` no other open handle holds, held until the returned file is
    closed (or the process ends): an exclusive ``flock`` on ``<directory>/<name>.lock``, made
    ``0600`` in a ``0700`` directory. Two processes, or two handles in one process, never hold
    the same name; a name comes free again when its holder exits, even killed.

    ``ConfigurationError`` when every name is held."""
    make_private_dir(directory)
    tried = 0
    for name in names:
        tried += 1
        path = directory / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE_FILE)
        held = os.fdopen(fd, "r+b")
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.close()
            continue
        except BaseException:
            held.close()
            raise
        return name, held
    raise ConfigurationError(
        f"all {tried} names under {directory} are held by running processes; stop one, or "
        "give this one a name of its own"
    )
