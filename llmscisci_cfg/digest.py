"""sha256 of files, folders and text: the one hashing helper (cache keys, manifests, reproduce).

A file's digest is plain ``sha256sum``, so a manifest can be checked by hand; a folder's is the
sha256 over its relative file names and their digests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from llmscisci_cfg.errors import UserError
from llmscisci_cfg.files import check_regular


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_sha256(path: Path) -> str:
    """``sha256sum`` of a file; of a folder, sha256 over its relative file names and digests."""
    path = Path(path)
    if not path.is_dir():
        return file_digest(path).hex()
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        h.update(file_digest(p) + b"\0")
    return h.hexdigest()


def file_digest(path: Path) -> bytes:
    """The raw sha256 of one regular file, read in 1 MiB chunks; anything else is a `UserError`."""
    check_regular(Path(path), "hashing")
    h = hashlib.sha256()
    try:
        with Path(path).open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return h.digest()
