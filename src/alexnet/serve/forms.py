"""The file of a multipart/form-data upload (`curl -F file=@photo.jpg`), parsed from bytes already in memory.

Not `Request.form()`: it reads the body past the app's size cap and spools large files to disk. The upload route
counts the body as it streams, and only the capped bytes get here; python-multipart's callback parser then finds
the parts without copying them anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from alexnet.errors import DataError

FIELD = "file"  # the form field the page's docs and `curl -F file=@...` use


def is_multipart(content_type: str) -> bool:
    return parse_options_header(content_type)[0] == b"multipart/form-data"


@dataclass
class Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)

    def disposition(self) -> dict[bytes, bytes]:
        return parse_options_header(self.headers.get(b"content-disposition", b""))[1]


def form_file(body: bytes, content_type: str) -> tuple[str | None, bytes]:
    """(the file's name or None, its bytes): the part named `file`, else the only part with a filename.
    A malformed body, or a form with no such part, is a DataError naming the cause."""
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        raise DataError("upload: malformed multipart form (no boundary in its Content-Type)")
    parts = _parts(body, boundary)
    files = [p for p in parts if b"filename" in p.disposition()]
    chosen = [p for p in parts if p.disposition().get(b"name") == FIELD.encode()] or files
    if len(chosen) != 1:
        names = ", ".join(repr(p.disposition().get(b"name", b"").decode("latin-1")) for p in parts) or "none"
        raise DataError(f"upload: the form needs one file in the field {FIELD!r} (its fields: {names})")
    filename = chosen[0].disposition().get(b"filename")
    return (filename.decode("utf-8", "replace") if filename else None), b"".join(chosen[0].chunks)


def _parts(body: bytes, boundary: bytes) -> list[Part]:
    parts: list[Part] = []
    header: list[list[bytes]] = [[], []]  # the field and value of the header being read, in pieces
    ended = []

    def header_end() -> None:
        parts[-1].headers[b"".join(header[0]).lower()] = b"".join(header[1])
        for pieces in header:
            pieces.clear()

    callbacks = {
        "on_part_begin": lambda: parts.append(Part()),
        "on_header_field": lambda data, start, end: header[0].append(data[start:end]),
        "on_header_value": lambda data, start, end: header[1].append(data[start:end]),
        "on_header_end": header_end,
        "on_part_data": lambda data, start, end: parts[-1].chunks.append(data[start:end]),
        "on_end": lambda: ended.append(True),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError as e:  # the base of its parse errors; also a boundary over 256 bytes
        raise DataError(f"upload: malformed multipart form ({e})") from None
    if not ended:  # the parser accepts a body cut short; a form without its closing boundary is not whole
        raise DataError("upload: malformed multipart form (it ends before its closing boundary)")
    return parts
