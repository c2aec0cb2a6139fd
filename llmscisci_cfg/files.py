"""Reading the files a user names: regular files only, of bounded size.

A recipe may point anywhere (``data.task=/dev/zero``, a FIFO, a 10 GB log): every file we read on
the user's behalf goes through `read_bytes`, which refuses what is not a regular file and what
is larger than the limit for its kind, naming the file and the recipe key. Files we write
atomically get the mode a plain ``open`` would give them (`plain_mode`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from llmscisci_cfg.errors import UserError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
#: Recipes, task files, chat templates, accelerate configs: text a person writes.
TEXT_LIMIT = 1 * MIB
#: Data tables and trace files, read whole into memory.
DATA_LIMIT = 2 * GIB


def check_regular(path: Path, what: str, limit: int | None = None) -> int:
    """The size of ``path``; a `UserError` unless it is a regular file within ``limit`` bytes.

    ``what`` names the file's role in messages (``data.source.path``, ``recipe`` …).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file ({what})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({what}): {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path}: is a directory, not a file ({what})")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(
            f"{path}: not a regular file ({what}); devices, pipes and sockets are not read"
        )
    if limit is not None and info.st_size > limit:
        raise UserError(
            f"{path}: {info.st_size / MIB:.1f} MiB is more than the {limit / MIB:.0f} MiB "
            f"read for {what}"
        )
    return info.st_size


def read_bytes(path: Path, what: str, limit: int = TEXT_LIMIT) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or a `UserError`."""
    check_regular(path, what, limit)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({what}): {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew while we read
        raise UserError(f"{path}: more than the {limit / MIB:.0f} MiB read for {what}")
    return data


def read_text(path: Path, what: str, limit: int = TEXT_LIMIT) -> str:
    """UTF-8 text of a regular file; undecodable bytes are a `UserError` naming line and column."""
    raw = read_bytes(path, what, limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise UserError(
            f"{path}:{line}:{col}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file "
            f"as UTF-8 ({what})"
        ) from None


def write_text(path: Path, text: str, what: str) -> None:
    """Write a file the user asked for; any failure to write it is a `UserError` naming it."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({what}): {exc.strerror or exc}") from None


def plain_mode(fd: int) -> None:
    """Give the file behind ``fd`` the mode a plain ``open`` would (0666 less the umask), not
    ``mkstemp``'s private 0600: colleagues read manifests and prediction tables too."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(fd, 0o666 & ~mask)
