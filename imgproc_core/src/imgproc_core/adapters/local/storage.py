"""Blobs as files in a local folder, read back through HMAC-signed URLs served by the HTTP app.

Layout: the key ``{user}/{image}.{ext}`` is the file ``root/{user}/{image}.{ext}``, and a
derivative ``{user}/{original}/{derived}.{ext}`` lives in the folder ``root/{user}/{original}/``.

Safety rules, each of which the unit tests check:

- Keys are validated strictly (:mod:`imgproc_core.adapters.blob_keys`) before any file system
  call, and the resulting path must resolve inside the root.
- Symbolic links below the root are never followed: a key whose path runs through one (a folder
  or the file itself) is refused with ``ValueError``, and :meth:`LocalBlobStorage.delete_prefix`
  leaves links alone. The root itself may be a link; it is resolved once, at construction.
- Writes are atomic: the bytes go to a temporary file in the target folder, are flushed to disk,
  then renamed over the target. Readers see the old file or the new one, never a part.
- File system failures (a full disk, a permission denied, a root that is not a folder) become
  :class:`~imgproc_core.domain.errors.DependencyUnavailable` with ``dependency="storage"``.

Files carry no media type: the HTTP app derives it from the key's extension.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Final, NoReturn
from urllib.parse import quote, urlencode, urlsplit

from imgproc_core.adapters.blob_keys import is_valid_segment, key_segments, prefix_segments
from imgproc_core.adapters.local.signing import UrlSigner
from imgproc_core.domain.errors import BlobNotFound, Conflict, DependencyUnavailable
from imgproc_core.ports.clock import Clock
from imgproc_core.ports.storage import SignedUrl, check_signed_url

#: '~' is not allowed in keys, so a temporary file can never be taken for a blob, nor named.
_TEMP_PREFIX: Final = ".~"
_TEMP_SUFFIX: Final = ".tmp"
#: A folder removed by a concurrent ``delete_prefix`` between creating it and writing into it.
_WRITE_ATTEMPTS: Final = 3
_READ_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_DEPENDENCY: Final = "storage"


class LocalBlobStorage:
    """:class:`~imgproc_core.ports.storage.BlobStorage` on a local folder.

    ``root`` is created on the first write, so a missing or broken folder does not stop the
    service from starting; it is reported as unavailable storage when used. ``base_url`` and
    ``route_prefix`` form the signed URLs, ``{base_url}{route_prefix}/{key}?expires=..&
    signature=..``, that the HTTP app checks with :meth:`verify` and serves from
    :meth:`path_for`.
    """

    def __init__(
        self,
        root: Path | str,
        base_url: str,
        secret: bytes,
        clock: Clock,
        route_prefix: str = "/blobs",
    ) -> None:
        self._signer = UrlSigner(secret, clock)
        self._clock = clock
        self._root = Path(root).resolve()
        self._base_url = _checked_base_url(base_url)
        self._route_prefix = _checked_route_prefix(route_prefix)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def route_prefix(self) -> str:
        """The URL path under which the HTTP app serves blobs: ``""`` or ``/something``."""
        return self._route_prefix

    # -- BlobStorage ------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` atomically. ``content_type`` is not stored: the key's
        extension says it. A key that runs through an existing blob (``a.jpg/b.png`` when
        ``a.jpg`` exists), or that names a folder of derivatives, raises ``Conflict``."""
        path = self._path(key)
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                self._make_folders(path, key)
                self._write_atomically(path, data, key)
                return
            except FileNotFoundError as exc:
                if attempt == _WRITE_ATTEMPTS - 1:
                    self._unavailable("write", key, exc)
            except OSError as exc:
                self._unavailable("write", key, exc)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            fd = os.open(path, _READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root(key)
            raise BlobNotFound(f"no blob under {key!r}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _symlink_refused(key) from None
            self._unavailable("read", key, exc)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BlobNotFound(f"no blob under {key!r}: it is a folder")
            with open(fd, "rb", closefd=False) as file:
                return file.read()
        except OSError as exc:
            self._unavailable("read", key, exc)
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        path = self._path(key)
        try:
            return stat.S_ISREG(os.lstat(path).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root(key)
            return False
        except OSError as exc:
            self._unavailable("check", key, exc)

    def delete(self, key: str) -> None:
        """Remove the blob under ``key``; a missing key, or one that names a folder of
        derivatives, is left as it is without error."""
        path = self._path(key)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root(key)
        except OSError as exc:
            self._unavailable("delete", key, exc)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob under the folder ``prefix`` names, at any depth, and the folder
        itself; the number of blobs removed.

        The prefix must end with ``/`` (``u1/`` or ``u1/img/``), as the port says: without it
        ``u1`` would also take ``u10/...``, so ``ValueError`` it is, like an empty prefix.
        Leftover temporary files of interrupted writes are removed too, but not counted;
        symbolic links are left alone.
        """
        folder = self._root.joinpath(*prefix_segments(prefix))
        self._refuse_links(folder, prefix)
        try:
            removed = _delete_tree(folder)
        except (FileNotFoundError, NotADirectoryError):
            self._check_root(prefix)
            return 0
        except OSError as exc:
            self._unavailable("delete", prefix, exc)
        return removed

    def signed_url(
        self, key: str, expires_in_seconds: int, *, filename: str | None = None
    ) -> SignedUrl:
        """``{base_url}{route_prefix}/{key}?expires=..&signature=..[&filename=..]``. An empty
        filename is the same as none."""
        key_segments(key)
        filename = check_signed_url(expires_in_seconds, filename)
        route = self._route(key)
        expires_at = self._clock.now() + timedelta(seconds=expires_in_seconds)
        # Rounded up, so the URL is valid at least until ``expires_at``, at most a second more.
        expires = math.ceil(expires_at.timestamp())
        extra = _extra(filename)
        signature = self._signer.sign(route, expires, extra)
        query = urlencode({"expires": expires, "signature": signature, **extra}, quote_via=quote)
        return SignedUrl(
            url=f"{self._base_url}{route}?{query}",
            expires_at=expires_at,
        )

    # -- for the HTTP app -------------------------------------------------------------------------

    def verify(self, key: str, expires: str, signature: str, filename: str | None = None) -> bool:
        """True when the query parameters of a URL from :meth:`signed_url` are intact and not
        expired. An invalid key, or a malformed value of any kind, is simply False."""
        try:
            key_segments(key)
        except ValueError:
            return False
        return self._signer.verify(self._route(key), expires, signature, _extra(filename))

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``, checked like every other access (``ValueError`` for a
        bad key or a path through a symbolic link). The file may not exist."""
        return self._path(key)

    # -- paths --------------------------------------------------------------------------------

    def _route(self, key: str) -> str:
        return f"{self._route_prefix}/{key}"

    def _path(self, key: str) -> Path:
        path = self._root.joinpath(*key_segments(key))
        self._refuse_links(path, key)
        return path

    def _refuse_links(self, path: Path, key: str) -> None:
        current = self._root
        for segment in path.relative_to(self._root).parts:
            current = current / segment
            try:
                mode = os.lstat(current).st_mode
            except (FileNotFoundError, NotADirectoryError):
                break
            except OSError as exc:
                self._unavailable("check", key, exc)
            if stat.S_ISLNK(mode):
                raise _symlink_refused(key)
        # Defence in depth: whatever the checks above missed, the path must stay inside.
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            raise ValueError(f"blob key {key!r} does not resolve to a path") from None
        if not resolved.is_relative_to(self._root):
            raise ValueError(f"blob key {key!r} resolves outside the storage folder")

    def _check_root(self, key: str) -> None:
        """A missing root only means nothing was stored yet; anything else in its place means
        the storage is broken."""
        try:
            mode = os.stat(self._root).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            self._unavailable("reach", key, exc)
        if not stat.S_ISDIR(mode):
            not_a_folder = NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            self._unavailable("reach", key, not_a_folder)

    # -- writing ------------------------------------------------------------------------------

    def _make_folders(self, path: Path, key: str) -> None:
        os.makedirs(self._root, exist_ok=True)
        current = self._root
        for segment in path.relative_to(self._root).parts[:-1]:
            current = current / segment
            try:
                os.mkdir(current)
            except FileExistsError:
                mode = os.lstat(current).st_mode
                if stat.S_ISLNK(mode):
                    raise _symlink_refused(key) from None
                if not stat.S_ISDIR(mode):
                    raise Conflict(
                        f"blob key {key!r} runs through {current.name!r}, which is a blob"
                    ) from None

    def _write_atomically(self, path: Path, data: bytes, key: str) -> None:
        fd, temporary = tempfile.mkstemp(
            prefix=f"{_TEMP_PREFIX}{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent
        )
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, IsADirectoryError):
                raise Conflict(f"blob key {key!r} names a folder of other blobs") from None
            raise
        _sync_folder(path.parent)

    # -- errors -------------------------------------------------------------------------------

    def _unavailable(self, action: str, key: str, exc: OSError) -> NoReturn:
        reason = exc.strerror or type(exc).__name__
        raise DependencyUnavailable(
            f"the local blob storage cannot {action} {key!r}: {reason}", dependency=_DEPENDENCY
        ) from exc


def _symlink_refused(key: str) -> ValueError:
    return ValueError(
        f"blob key {key!r} runs through a symbolic link, which the storage never follows"
    )


def _extra(filename: str | None) -> dict[str, str]:
    return {"filename": filename} if filename else {}


def _delete_file(path: Path) -> int:
    """1 when ``path`` was a blob, 0 when it was a temporary file or already gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return 1 if is_valid_segment(path.name) else 0


def _delete_tree(top: Path) -> int:
    """Remove the files below ``top`` (not following links), then the folders left empty."""
    removed = 0
    # Listed first so that a missing or broken folder is reported rather than skipped.
    os.scandir(top).close()

    def fail(exc: OSError) -> None:
        # Something removed concurrently is as good as removed here.
        if not isinstance(exc, FileNotFoundError):
            raise exc

    for folder, subfolders, files in os.walk(top, topdown=False, onerror=fail):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                removed += _delete_file(path)
        for name in subfolders:
            # A folder that still holds a symbolic link stays, with the link.
            with contextlib.suppress(OSError):
                Path(folder, name).rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()
    return removed


def _sync_folder(folder: Path) -> None:
    """Make the rename durable: without this a power cut can lose it even though the file's
    bytes were flushed."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _checked_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"base_url must be an http(s) URL such as 'http://127.0.0.1:8000', not {base_url!r}"
        )
    return base_url.rstrip("/")


def _checked_route_prefix(route_prefix: str) -> str:
    if route_prefix and not route_prefix.startswith("/"):
        raise ValueError(f"route_prefix must start with '/', not {route_prefix!r}")
    if "?" in route_prefix or "#" in route_prefix:
        raise ValueError(f"route_prefix must be a plain path, not {route_prefix!r}")
    return route_prefix.rstrip("/")
