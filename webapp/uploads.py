"""Read the uploaded image from a request, and keep it on disk only when the user asked."""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from flask import current_app, request
from PIL import Image
from werkzeug.exceptions import RequestEntityTooLarge

from classifier.errors import ImageError
from formats.atomic import write_atomically

log = logging.getLogger(__name__)


class NoFileError(ImageError):
    """The request carries no image."""


def read_image_bytes() -> bytes:
    """The image from multipart field `file`, or from a raw body sent as `image/*`."""
    upload = request.files.get("file")
    if upload is not None:
        return upload.read()
    # a raw body of unnamed bytes is an image too: decode() says if it is not one
    if request.mimetype.startswith("image/") or request.mimetype == "application/octet-stream":
        return _raw_body()
    raise NoFileError(
        "No image was sent: post it as multipart field `file`, or as the body "
        "with an image/* Content-Type."
    )


def _raw_body() -> bytes:
    """The request body, or 413 when it is larger than MAX_CONTENT_LENGTH.

    A body sent chunked has no Content-Length for Werkzeug to refuse up front, and its
    limited stream ends quietly at the limit: so one byte more is read from the server's own
    stream here, and a body that has it is refused rather than classified cut short.
    """
    limit = request.max_content_length
    if request.content_length is not None or limit is None:
        return request.get_data(cache=False)
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    return data


def read_image_list() -> list[bytes]:
    """The images of multipart field `files`, one part per photo, in the order sent."""
    uploads = request.files.getlist("files")
    if not uploads:
        raise NoFileError(
            "No photos were sent: post each one as a multipart `files` part (one photo alone "
            "may also go to /api/predict as `file`)."
        )
    return [upload.read() for upload in uploads]


def keep_upload(data: bytes) -> Path | None:
    """Save `data` under the uploads folder with a generated name, when KEEP_UPLOADS is on."""
    if not current_app.config["KEEP_UPLOADS"]:
        return None
    folder = Path(current_app.root_path) / current_app.config["UPLOAD_FOLDER"]
    # the client's filename is never used: it races between clients and can carry a path
    extension = (Image.open(io.BytesIO(data)).format or "img").lower()
    try:
        return save_capped(folder, data, extension)
    except OSError as error:
        # the user still gets the answer; the operator learns why nothing was kept
        log.error(
            "Could not keep an upload in %s (%s): check the folder's permissions and free "
            "space, or turn SEAFRONT_KEEP_UPLOADS off.",
            folder,
            error,
        )
        return None


def save_capped(
    folder: Path,
    data: bytes,
    extension: str,
    max_files: int | None = None,
    max_bytes: int | None = None,
    *,
    cap_root: Path | None = None,
) -> Path:
    """Write `data` to `folder` under a generated name, then rotate the oldest files out.

    The folder's own files (not its subfolders) are kept within `max_files` files and `max_bytes`
    bytes, by default the app's UPLOADS_MAX_FILES and UPLOADS_MAX_BYTES; the newest file always
    stays. With `cap_root` (a folder above `folder`, e.g. uploads/feedback for
    uploads/feedback/<label>), the caps count and rotate every file under `cap_root` instead.
    Safe from many threads, processes and replicas sharing the folder: files appear complete
    (formats.atomic: written under a hidden name, then renamed), and one rotation runs at a time
    (an flock on the capped folder itself), so once the writes in flight are done the folder is
    within its caps and no more was deleted than needed.
    """
    if max_files is None:
        max_files = int(current_app.config["UPLOADS_MAX_FILES"])
    if max_bytes is None:
        max_bytes = int(current_app.config["UPLOADS_MAX_BYTES"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = write_atomically(folder / f"{uuid.uuid4().hex}.{extension.lower().lstrip('.')}", data)
    capped = Path(cap_root) if cap_root else folder
    with _one_rotation_at_a_time(capped):
        _rotate(
            capped,
            keep=path,
            max_files=max_files,
            max_bytes=max_bytes,
            recursive=cap_root is not None,
        )
    return path


@contextlib.contextmanager
def _one_rotation_at_a_time(folder: Path) -> Iterator[None]:
    """Hold an exclusive flock on `folder` itself (no lock file to clutter it): threads,
    processes and containers on one host take turns, and so do machines on a shared file system
    that supports flock. Where it does not (NFS, which emulates flock with byte-range locks that
    a folder cannot take), the rotation runs unlocked: the caps still hold once the writes in
    flight are done, and a rotation racing another may delete a few more old files than needed.
    """
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as error:
            log.debug("Rotating %s without a lock: %s", folder, error)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _finished_files(folder: Path, recursive: bool) -> list[tuple[int, str, int, Path]]:
    """(mtime, name, size, path) of the finished files in `folder` (hidden ones are partial)."""
    files = []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        if recursive and entry.is_dir(follow_symlinks=False):
            files += _finished_files(Path(entry.path), recursive)
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # rotated out by another process meanwhile
            continue
        files.append((stat.st_mtime_ns, entry.name, stat.st_size, Path(entry.path)))
    return files


def _rotate(folder: Path, keep: Path, max_files: int, max_bytes: int, recursive: bool) -> None:
    """Delete the oldest finished files in `folder` until it is within both caps."""
    files = sorted(_finished_files(folder, recursive))
    count, total = len(files), sum(size for _, _, size, _ in files)
    for _, _, size, path in files:
        if count <= max_files and total <= max_bytes:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        count, total = count - 1, total - size
