"""The few frames of RESP3 (and RESP2) that :mod:`cachedcall.tracking` speaks: parsing a
reply or a push, writing a command, and where a Redis URL points.

Process state: none.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote
from urllib.parse import urlsplit

__all__: list[str] = []


class Incomplete(Exception):
    """The buffer ends inside a frame: read more."""


class ReplyError(Exception):
    """Redis answered a command with an error."""


def parse(buf: bytes | bytearray, pos: int = 0) -> tuple[Any, int]:
    """One RESP2/RESP3 frame from ``buf`` at ``pos``: ``(value, position after it)``.

    Pushes come back as ``("push", [items])``, maps as dicts, errors as :class:`ReplyError`
    instances (not raised: a caller reading pushes must not lose its place); raise
    :class:`Incomplete` when the frame is not all there yet.
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise Incomplete
    kind = buf[pos : pos + 1]
    line = bytes(buf[pos + 1 : end])
    pos = end + 2
    if kind == b"+":
        return line.decode(), pos
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"_":
        return None, pos
    if kind == b"#":
        return line == b"t", pos
    if kind in (b",", b"("):
        return line.decode(), pos
    if kind in (b"$", b"!", b"="):
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise Incomplete
        data = bytes(buf[pos : pos + size])
        pos += size + 2
        if kind == b"!":
            return ReplyError(data.decode(errors="replace")), pos
        return data, pos
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(line)
        if count < 0:
            return None, pos
        if kind in (b"%", b"|"):
            count *= 2
        items = []
        for _ in range(count):
            item, pos = parse(buf, pos)
            items.append(item)
        if kind == b">":
            return ("push", items), pos
        if kind == b"%":
            return dict(zip(items[::2], items[1::2], strict=True)), pos
        if kind == b"|":
            # An attribute annotates the reply that follows it: return that reply.
            return parse(buf, pos)
        return items, pos
    raise ValueError(f"not a RESP frame: {bytes(buf[pos - len(line) - 3 : pos])!r}")


def command(*parts: str | bytes) -> bytes:
    """A command as RESP arrays of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def address(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Where and how to connect, from a Redis URL (``redis://``, ``rediss://``,
    ``unix://``) and the alias's ``OPTIONS`` (``username``, ``password``)."""
    parts = urlsplit(url)
    found: dict[str, Any] = {
        "username": unquote(parts.username) if parts.username else options.get("username"),
        "password": unquote(parts.password) if parts.password else options.get("password"),
        "tls": parts.scheme == "rediss",
    }
    if parts.scheme == "unix":
        found["path"] = parts.path
    elif parts.scheme in ("redis", "rediss"):
        found["host"] = parts.hostname or "localhost"
        found["port"] = parts.port or 6379
    else:
        raise ValueError(f"not a Redis URL: {url!r}")
    return found
