"""Lua scripts shipped next to the code they belong to, loaded once per process.

Neutral ground: the runtime (stream.lua) and the job domain (apply.lua, submit.lua)
both load their scripts through here, so neither has to import the other for it.
"""

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
