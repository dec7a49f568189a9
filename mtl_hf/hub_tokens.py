"""Hugging Face access tokens: which ones this process holds, and keeping them out of what it shows.

A token is sent to the Hub only as the ``Authorization`` header. A Hub, or a proxy in front of it,
may quote that header back in an error message; ``huggingface_hub`` and ``transformers`` put such
messages into the exceptions they raise, and a traceback prints them. So every mtl-hf call that talks
to the Hub (loading a model or a backbone, predict with a Hub id, push) runs inside
:func:`hub_errors_redacted`, which replaces each token the process holds by ``***`` in the exception
(its arguments, message attributes, notes, and every exception chained to it) before it propagates.

The same tokens must never be uploaded: :func:`token_in_file` finds one in any file, in UTF-8 or
UTF-16, in its raw bytes and, for JSON and the JSON header of a safetensors file (its metadata), in
the decoded strings (where ``\\u0068f_...`` escapes would hide it from a byte search).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import MtlHfError

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
"""Environment variables ``huggingface_hub`` reads a token from."""

MIN_TOKEN_LENGTH = 8
"""Shorter strings are not treated as secrets (redacting ``"1"`` everywhere would garble messages)."""

REDACTED = "***"

_CHUNK = 1 << 20


class HubTokenError(MtlHfError):
    """An error from the Hub whose message held an access token that could not be removed in place;
    raised instead, with the token replaced by ``***``."""


def known_tokens(*explicit: str | bool | None) -> list[str]:
    """Every access token this process holds: ``explicit`` ones (a ``token=`` argument), the
    environment's (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``) and the saved login, longest first."""
    found: list[str | None] = [t for t in explicit if isinstance(t, str)]
    found += [os.environ.get(name) for name in TOKEN_VARIABLES]
    try:
        from huggingface_hub import get_token

        found.append(get_token())
    except Exception:  # an unreadable saved login is not ours to report here
        pass
    unique = {t for t in found if t and len(t) >= MIN_TOKEN_LENGTH}
    return sorted(unique, key=len, reverse=True)


def redact(text: str, tokens: Iterable[str]) -> str:
    """``text`` with each of ``tokens`` replaced by ``***``."""
    for token in tokens:
        text = text.replace(token, REDACTED)
    return text


@contextlib.contextmanager
def hub_errors_redacted(*tokens: str | bool | None) -> Iterator[None]:
    """Run a block that talks to the Hub; an exception leaving it holds no access token.

    ``tokens`` adds tokens passed explicitly (``token=``) to those :func:`known_tokens` finds. The
    exception keeps its type (callers still catch ``OSError`` or ``HfHubHTTPError``) and is cleaned in
    place; one whose text still shows a token afterwards (a custom ``__str__``) is replaced by a
    :class:`HubTokenError` carrying the cleaned text.
    """
    try:
        yield
    except BaseException as exc:
        secrets = known_tokens(*tokens)
        if not secrets or not _mentions(exc, secrets):
            raise
        for link in _chain(exc):
            _scrub(link, secrets)
        if _mentions(exc, secrets):
            raise HubTokenError(redact(f"{type(exc).__name__}: {exc}", secrets)) from None
        raise


def token_in_file(path: str | os.PathLike[str], tokens: Iterable[str]) -> str | None:
    """How ``path`` holds one of ``tokens`` (``"UTF-8 bytes"``, ``"safetensors metadata"``...), or ``None``.

    Reads the file in chunks, so a large weights file is scanned without being loaded whole.
    """
    path = Path(path)
    secrets = [t for t in tokens if t]
    needles = {t.encode(encoding): name for t in secrets for encoding, name in _ENCODINGS}
    longest = max((len(n) for n in needles), default=1)
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            window = tail + chunk
            for needle, name in needles.items():
                if needle in window:
                    return f"{name} bytes"
            tail = window[-(longest - 1) :] if longest > 1 else b""
    for strings, where in _decoded_strings(path):
        if any(t in s for s in strings for t in secrets):
            return where
    return None


_ENCODINGS = (("utf-8", "UTF-8"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"))


def _decoded_strings(path: Path) -> Iterator[tuple[list[str], str]]:
    """Strings of the JSON that ``path`` holds (a ``.safetensors`` header, a JSON or JSON-lines file)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            with path.open("rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                if size <= 100 * _CHUNK:  # the format's own bound on a header is 100 MB
                    yield _strings(json.loads(handle.read(size))), "safetensors metadata"
        elif suffix == ".json":
            yield _strings(json.loads(path.read_bytes())), "a JSON string"
        elif suffix == ".jsonl":
            lines = path.read_bytes().splitlines()
            yield [s for line in lines if line.strip() for s in _strings(json.loads(line))], "a JSON string"
    except (OSError, ValueError, struct.error, RecursionError):
        return  # not JSON after all: the byte search above is what applies


def _strings(tree: Any) -> list[str]:
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            stack += [*node.keys(), *node.values()]
        elif isinstance(node, list):
            stack += node
    return found


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception linked to it (causes, contexts, members of exception groups)."""
    seen: dict[int, BaseException] = {}
    stack = [exc]
    while stack:
        link = stack.pop()
        if id(link) in seen:
            continue
        seen[id(link)] = link
        stack += [e for e in (link.__cause__, link.__context__) if e is not None]
        stack += list(getattr(link, "exceptions", ()) or ())
    return list(seen.values())


def _texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), *map(str, getattr(exc, "__notes__", []) or [])]
    return texts


def _mentions(exc: BaseException, tokens: list[str]) -> bool:
    return any(t in text for link in _chain(exc) for text in _texts(link) for t in tokens)


def _scrub(exc: BaseException, tokens: list[str]) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, tokens)
        if any(t in repr(value) for t in tokens):
            return redact(str(value), tokens)
        return value

    with contextlib.suppress(AttributeError, TypeError):
        exc.args = tuple(clean(a) for a in exc.args)
    for name, value in list(vars(exc).items()) if hasattr(exc, "__dict__") else []:
        if isinstance(value, str) and any(t in value for t in tokens):
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, name, redact(value, tokens))
    if isinstance(exc, OSError):
        for name in ("strerror", "filename", "filename2"):
            value = getattr(exc, name, None)
            if isinstance(value, str):
                setattr(exc, name, redact(value, tokens))
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [clean(n) for n in notes]
