"""Lua scripts shipped next to the code, loaded once per process."""

from __future__ import annotations

from functools import cache
from importlib import resources

MARKER = "--#"


@cache
def lua(package: str, filename: str, section: str | None = None) -> str:
    text = resources.files(package).joinpath(filename).read_text()
    if section is None:
        return text
    for part in text.split("\n" + MARKER)[1:]:
        name, _, body = part.partition("\n")
        if name.strip() == section:
            return body
    raise KeyError(f"{filename} has no section {section!r}")
