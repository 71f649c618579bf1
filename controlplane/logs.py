"""Structured logging: one event per line, context from contextvars, no secrets.

Events are named ``noun.verb`` (``run.created``, ``shard.dispatched``) and carry
key/value context. A processor redacts API keys, credentials inside URLs,
private keys and presigned URL signatures from every value before rendering.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_API_KEY = re.compile(r"tlk_[A-Za-z0-9_\-]{8,}")
# Everything between "scheme://" and the last "@" before the path: a user
# name, a password, even one holding a raw "@".
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s\"'<>]*@")
# "user:secret@host" with no scheme in front, as git prints it in messages
# ("unable to look up user:token@host") and as scp-like addresses write it.
_BARE_CREDENTIALS = re.compile(r"(?<![\w/:@])[\w.%+~-]+:[^\s/@:\"']+@(?=[\w\[.-])")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:access_token|private_token|oauth_token|token|password|passwd"
    r"|secret|api_?key|auth|sig)=)[^&;#\s\"']+"
)
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
    re.DOTALL,
)
_PRESIGNED = re.compile(
    r"(?i)([?&](X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature)=)[^&\s\"']+"
)
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
REDACTED = "[redacted]"


class SecretValues:
    """Values of the secrets handed to runs in flight: redacted everywhere.

    A run adds its secrets' values when it gets them and removes them once
    its record is final; while any run holds a value, no log line and no
    text put through ``redact_text`` shows it. A multi-line value is also
    redacted line by line (a log tail may hold only part of it).
    """

    # XXX: only the value as written (and its lines) is redacted, not an
    # encoding of it (base64, URL-encoded), nor a value a page shows in a
    # screenshot or video; redacting common encodings would narrow that.
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._pattern: re.Pattern[str] | None = None
        self._bytes_pattern: re.Pattern[bytes] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _pieces(values: Iterable[str]) -> set[str]:
        pieces: set[str] = set()
        for value in values:
            pieces.add(value)
            pieces.update(line.strip() for line in value.splitlines())
        return {p for p in pieces if len(p) >= 4}

    def add(self, values: Iterable[str]) -> None:
        with self._lock:
            self._counts.update(self._pieces(values))
            self._compile()

    def remove(self, values: Iterable[str]) -> None:
        with self._lock:
            self._counts.subtract(self._pieces(values))
            self._counts = +self._counts
            self._compile()

    def _compile(self) -> None:
        longest_first = sorted(self._counts, key=len, reverse=True)
        if not longest_first:
            self._pattern = self._bytes_pattern = None
            return
        self._pattern = re.compile("|".join(re.escape(v) for v in longest_first))
        self._bytes_pattern = re.compile(
            b"|".join(re.escape(v.encode()) for v in longest_first)
        )

    @property
    def active(self) -> bool:
        return self._pattern is not None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(REDACTED, text)

    def redact_bytes(self, data: bytes) -> bytes:
        pattern = self._bytes_pattern
        return data if pattern is None else pattern.sub(REDACTED.encode(), data)


SECRET_VALUES = SecretValues()


def redact_text(text: str) -> str:
    """Return ``text`` with every known kind of secret replaced."""
    text = SECRET_VALUES.redact(text)
    text = _PRIVATE_KEY.sub(REDACTED, text)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _BARE_CREDENTIALS.sub(f"{REDACTED}@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _PRESIGNED.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _API_KEY.sub("tlk_" + REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if value is None or isinstance(value, bool | int | float):
        return value
    # Any other object is rendered by repr(): redact that text if needed.
    text = repr(value)
    redacted = redact_text(text)
    return value if redacted == text else redacted


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: redact secrets from every value, exceptions too."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(value)
    return event_dict


def configure_logging(*, log_format: str = "console", level: str = "info") -> None:
    """Route structlog (and stdlib loggers) to stderr as JSON or console lines."""
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_processor,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
