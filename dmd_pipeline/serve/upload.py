"""Receiving an upload of ``dmd serve``: a bounded multipart parser that streams the clip to disk, the clock
on the wire, and the count of uploads arriving per client.

Every limit is checked as bytes arrive, so a refused body costs what was read so far and no more:

* the clip at most ``max_bytes``; the text fields (their names counted too) at most :data:`MAX_FIELD_BYTES`;
  at most :data:`MAX_PARTS` parts and :data:`MAX_HEADER_BYTES` bytes of part headers in all;
* each read of the body waits at most ``read_timeout_s``, and after ``rate_grace_s`` the average rate must
  stay above ``min_bytes_s`` (408 otherwise), so a stalled or trickling client frees its place;
* one client address has at most ``per_client`` uploads arriving at once (429 beyond).

A full disk answers 507. The upload is written with mode 0600 under a random name.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import secrets
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from dmd_pipeline.serve.deps import ApiError

MAX_FIELD_BYTES = 1 << 20  # transcript and other text fields, names included, together
MAX_PARTS = 16  # file, transcript, asr and room for a client's extras; a form of a million fields is refused
MAX_HEADER_BYTES = 16 << 10  # part headers, all parts together
FORM_OVERHEAD = 64 << 10  # multipart boundaries and part headers on top of the file
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL = "the server's disk is full; the upload was not stored (try again later)"


def display_name(name: str) -> str:
    """A display name for a client's text (a file name): control, format (bidi overrides, zero-width) and
    line-separator characters removed, at most 200 characters; never used as a path."""
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp", "Cs"))
    return name.strip()[:200]


def safe_filename(name: str) -> str:
    """The display name of an uploaded file: its last path component, cleaned (:func:`display_name`)."""
    return display_name(name.replace("\\", "/").rsplit("/", 1)[-1]) or "upload"


def upload_name(filename: str) -> str:
    """A random stored name keeping a known media extension (ffprobe decides the type anyway)."""
    from dmd_pipeline.analysis.batch import MEDIA_EXTS

    ext = Path(filename).suffix.lower().lstrip(".")
    return f"upload-{secrets.token_hex(8)}" + (
        f".{ext}" if re.fullmatch(r"[a-z0-9]+", ext) and ext in MEDIA_EXTS else ""
    )


def create_private(path: Path) -> BinaryIO:
    """A new file open for writing, readable by its owner only (0600), whatever the umask."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError saying the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE


class MultipartUpload:
    """Streams a multipart body into ``folder``, counting bytes, parts and header bytes as they arrive."""

    def __init__(self, boundary: bytes, folder: Path, max_bytes: int) -> None:
        from python_multipart.multipart import MultipartParser

        self.folder, self.max_bytes = folder, max_bytes
        self.fields: dict[str, bytearray] = {}
        self.filename: str | None = None
        self.stored: str | None = None
        self.size = 0
        self.field_bytes = 0
        self.header_bytes = 0
        self.n_parts = 0
        self._headers: dict[str, bytes] = {}
        self._hname = bytearray()
        self._hvalue = bytearray()
        self._fh: Any = None
        self._field: str | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda b, s, e: self._header_bytes(self._hname, b, s, e),
                "on_header_value": lambda b, s, e: self._header_bytes(self._hvalue, b, s, e),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _part_begin(self) -> None:
        self.n_parts += 1
        if self.n_parts > MAX_PARTS:
            raise ApiError(413, f"too many form fields (at most {MAX_PARTS})")
        self._headers, self._field = {}, None

    def _header_bytes(self, buf: bytearray, data: bytes, start: int, end: int) -> None:
        self.header_bytes += end - start
        if self.header_bytes > MAX_HEADER_BYTES:
            raise ApiError(413, f"the form's part headers are larger than {MAX_HEADER_BYTES // 1024} KB")
        buf.extend(data[start:end])

    def _header_end(self) -> None:
        self._headers[bytes(self._hname).decode("latin-1").lower()] = bytes(self._hvalue)
        self._hname.clear()
        self._hvalue.clear()

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in params and name == "file":
            if self.stored is not None:
                raise ApiError(400, "send one file per analysis")
            self.filename = safe_filename(params[b"filename"].decode("utf-8", "replace"))
            self.stored = upload_name(self.filename)
            self._fh = create_private(self.folder / self.stored)
        elif b"filename" in params:
            raise ApiError(
                400, f"unexpected file field {display_name(name)!r}: the clip goes in the field 'file'"
            )
        else:
            self._count_field(len(name.encode("utf-8")))
            self._field = name
            self.fields.setdefault(name, bytearray())

    def _count_field(self, n: int) -> None:
        self.field_bytes += n
        if self.field_bytes > MAX_FIELD_BYTES:
            raise ApiError(413, "the text fields are larger than 1 MB")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if self._fh is not None:
            self.size += n
            if self.size > self.max_bytes:
                raise ApiError(413, f"the file is larger than the limit of {self.max_bytes / (1 << 20):g} MB")
            self._fh.write(data[start:end])
        elif self._field is not None:
            self._count_field(n)
            self.fields[self._field].extend(data[start:end])

    def _part_end(self) -> None:
        self.close()

    def write(self, chunk: bytes) -> None:
        """Feed one chunk of the body."""
        self.parser.write(chunk)

    def finish(self) -> None:
        """The body has ended: check it was complete and close the file."""
        self.parser.finalize()
        self.close()

    def close(self) -> None:
        """Close the file being written, if any."""
        if self._fh is not None:
            fh, self._fh = self._fh, None
            fh.close()

    def text(self, name: str) -> str | None:
        """A text field's value, or None when it was not sent."""
        v = self.fields.get(name)
        return None if v is None else v.decode("utf-8", "replace")


async def timed_chunks(
    stream: AsyncIterator[bytes], read_timeout_s: float, min_bytes_s: float, grace_s: float
) -> AsyncIterator[bytes]:
    """The chunks of a request body, or 408 when one read waits over ``read_timeout_s`` or, once ``grace_s``
    have passed, the average rate falls under ``min_bytes_s``."""
    t0 = time.monotonic()
    total = 0
    it = stream.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(it.__anext__(), timeout=read_timeout_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise ApiError(408, f"the upload stalled (no data for {read_timeout_s:g} s)") from None
        total += len(chunk)
        elapsed = time.monotonic() - t0
        if elapsed > grace_s and total < min_bytes_s * elapsed:
            raise ApiError(408, f"the upload is too slow (under {min_bytes_s / 1024:g} KB/s)")
        yield chunk


class ClientUploads:
    """Uploads arriving now, per client address (thread-safe): :meth:`slot` bounds them per client."""

    def __init__(self, per_client: int) -> None:
        self.per_client = max(1, int(per_client))
        self._lock = threading.Lock()
        self._by_client: Counter[str] = Counter()

    @property
    def in_progress(self) -> int:
        """How many uploads are arriving now (all clients)."""
        with self._lock:
            return sum(self._by_client.values())

    @contextlib.contextmanager
    def slot(self, client: str) -> Iterator[None]:
        """Hold one of ``client``'s upload places while its body arrives; 429 when it has none left."""
        with self._lock:
            if self._by_client[client] >= self.per_client:
                raise ApiError(
                    429,
                    f"too many uploads in progress from your address (at most {self.per_client} at once)",
                    {"Retry-After": "5"},
                )
            self._by_client[client] += 1
        try:
            yield
        finally:
            with self._lock:
                self._by_client[client] -= 1
                if self._by_client[client] <= 0:
                    del self._by_client[client]
