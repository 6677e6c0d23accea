"""The zip container of Office Open XML, OpenDocument and EPUB files, opened with care: a file that
is not a zip (truncated, corrupt, or a password-protected Office file, which is an OLE container)
fails with its reason, and so does one that would unpack to far more than any document needs (a
zip bomb), before any parser starts inflating it."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from kb.errors import ExtractionError

MAX_UNPACKED_BYTES = 512 * 1024 * 1024
"""The most a document's parts may add up to, unpacked (zipfile stops at each part's declared size)."""

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")
_REASON_MAX = 200

PARSER_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    LookupError,
    ValueError,
    SyntaxError,  # lxml.etree.XMLSyntaxError derives from it
    TypeError,
    AttributeError,
    AssertionError,
    NotImplementedError,
    RecursionError,
)
"""What a library reading a damaged package can raise (a missing part is a KeyError, bad XML an
XMLSyntaxError, a bad stream a zlib or CRC error...). Caught only around their calls."""


def open_package(path: str, data: bytes, kind: str) -> zipfile.ZipFile:
    """The zip archive of a document of `kind` ("Word document", "EPUB book"...).

    Raises:
        ExtractionError: the file is empty, password-protected, a legacy binary Office file, not a
            zip archive (truncated or corrupt), or would unpack to more than MAX_UNPACKED_BYTES.
    """
    if not data.strip():
        raise ExtractionError(path, f"empty file, not a {kind}")
    if data.startswith(_OLE_MAGIC):
        if _ENCRYPTION_STREAM in data:
            raise ExtractionError(path, f"encrypted {kind} (needs a password)")
        raise ExtractionError(path, f"a legacy binary Office file, not a {kind}")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        unpacked = sum(info.file_size for info in archive.infolist())
    except PARSER_ERRORS as exc:
        raise ExtractionError(path, f"corrupt or truncated {kind} ({reason(exc)})") from exc
    if unpacked > MAX_UNPACKED_BYTES:
        raise ExtractionError(
            path, f"{kind} unpacks to {unpacked // 2**20} MiB, over {MAX_UNPACKED_BYTES // 2**20} MiB"
        )
    return archive


def reason(exc: BaseException) -> str:
    """An exception as a short reason for `failed`."""
    message = str(exc).strip() or type(exc).__name__
    return message[:_REASON_MAX]
