"""One way to write a file or a folder safely: temporary name, fsync, rename, fsync the parent folder.

Every artifact of the project (store shards and metadata, checkpoints, configs, manifests, metrics, the Lyra
download) is written through these helpers, so a crash at any instant leaves either the old file or the new
one under the real name, never a torn one. Temporary names start with '.' and end in '.part' (files) or
'.tmp-*' (folders), so no reader's glob ever mistakes them for committed data, and `clean_stale` removes
what a killed writer left behind.

- `atomic_write(path, data)`: bytes, str or a list of byte chunks -> `path`, atomically.
- `atomic_file(path)`: a context manager yielding a binary file object; committed when the block ends
  cleanly, discarded on an exception (for streamed writes: downloads).
- `atomic_dir(final)`: a context manager yielding a hidden folder beside `final` to fill; renamed into place
  when the block ends cleanly (replacing an existing `final` when `replace=True`), removed on an exception.
- `fsync_dir`, `fsync_file`, `sha256_file`; `share_mode` (the umask's mode for a file a library wrote).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

TMP_DIR_MARK = ".tmp-"  # hidden build folders are named `.NAME.tmp-XXXX`


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in `path` durable (a no-op where the filesystem cannot fsync folders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's contents to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def share_mode(path: str | os.PathLike[str]) -> None:
    """Give a file written by a library (safetensors writes 0600) the mode the user's umask asks for (0644
    typically), as every file `atomic_file` writes: checkpoints and exported models are shared data. Secrets
    (privacy keys, id maps) are written 0600 on purpose and never passed here."""
    os.chmod(path, 0o666 & ~_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Yield a binary file that becomes `path` (fsynced, renamed) when the block ends without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")  # never matches a store glob
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; our files are shared like any data file
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:  # disk full, quota, permissions: name the file being written
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike[str], data: bytes | str | list[bytes]) -> None:
    """Write `path` via a temporary file in the same folder, fsync, rename, fsync the folder."""
    chunks = [data.encode("utf-8")] if isinstance(data, str) else [data] if isinstance(data, bytes) else data
    with atomic_file(path) as f:
        for chunk in chunks:
            f.write(chunk)


def clean_stale(folder: str | os.PathLike[str], name: str = "") -> None:
    """Remove the hidden temporary files and folders a killed writer left in `folder` (for target `name`, or
    all of them). Only names this module makes are touched."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        own_dir = p.name.startswith(f".{name}" if name else ".") and TMP_DIR_MARK in p.name and p.is_dir()
        own_file = not name and p.name.startswith(".tmp-") and p.name.endswith(".part")
        if own_dir:
            shutil.rmtree(p, ignore_errors=True)
        elif own_file:
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str], *, busy: Exception | None = None) -> Iterator[None]:
    """An exclusive flock on the file `path` (created if absent) held for the block. With `busy`, never wait:
    raise `busy` when another process holds the lock (stores, run directories, builds)."""
    import fcntl

    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (fcntl.LOCK_NB if busy is not None else 0))
        except BlockingIOError:
            assert busy is not None  # only a non-blocking attempt can find the lock held
            raise busy from None
        yield


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Yield a hidden folder beside `final` to fill; on a clean exit it is fsynced and renamed to `final`.

    An existing `final` is an error unless `replace` (then the old one is moved aside and removed after the
    rename: a crash in between leaves one of the two complete). On an exception the folder is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}{TMP_DIR_MARK}"))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder is shared like its files
    try:
        yield tmp
        fsync_dir(tmp)
        if final.exists() and not replace:
            raise FileExistsError(f"{final}: already exists")
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old{TMP_DIR_MARK}"))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def check_outside(outputs: dict[str, str | os.PathLike[str] | None], inputs: list[str | os.PathLike[str]]) -> None:
    """No output may land inside an input (a source store is never written): each `flag -> path` of `outputs`
    (None: not given) is compared, links resolved, with every input folder; `Codec2VecError` naming both if one
    lies inside, or is, an input."""
    from codec2vec.common.errors import Codec2VecError

    for flag, out in outputs.items():
        if out is None:
            continue
        o = Path(out).resolve()
        for src in inputs:
            s = Path(src).resolve()
            if o.is_relative_to(s):
                raise Codec2VecError(
                    f"{flag} {out}: inside the input {src}, which is never written; choose another path"
                )


__all__ = [
    "atomic_dir",
    "check_outside",
    "atomic_file",
    "atomic_write",
    "clean_stale",
    "exclusive_lock",
    "fsync_dir",
    "fsync_file",
    "sha256_file",
    "share_mode",
]
