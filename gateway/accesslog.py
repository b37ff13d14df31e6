"""Access log lines without query strings.

A query string can hold what must never reach a log file: a one-time sign-in token
(`/?token=...`), a signed download link's signature, a WebSocket resume position. The
path and status are what an operator needs; the query is cut from every request line
uvicorn writes (HTTP access lines and the WebSocket lines it logs on `uvicorn.error`).
"""

from __future__ import annotations

import logging

# The loggers uvicorn writes request lines to.
REQUEST_LOGGERS = ("uvicorn.access", "uvicorn.error")


class DropQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(without_query(a) for a in record.args)
        return True


def without_query(value: object) -> object:
    """A request target (`/path?query`) without its query; anything else as it is."""
    if isinstance(value, str) and value.startswith("/") and "?" in value:
        return value.split("?", 1)[0]
    return value


def install() -> None:
    """Add the filter to uvicorn's request loggers (once, however often it is called)."""
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropQueryStrings) for f in logger.filters):
            logger.addFilter(DropQueryStrings())
