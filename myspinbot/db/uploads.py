"""Who uploaded each stand-alone file (portraits, narration recordings) for later jobs.

The S3 object alone does not say whose it is, and a job names an upload only by its id,
so the gateway records the uploader here when it stores the file and looks it up before
a job may use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, select

from myspinbot.db.history import _create_engine
from myspinbot.db.migrations import migrate
from myspinbot.db.schema import uploads as uploads_table

UploadKind = Literal["portrait", "narration"]


@dataclass(frozen=True)
class Upload:
    id: str
    kind: UploadKind
    owner: str | None  # None: uploaded before accounts, not adopted by the owner account yet
    created_at: float


class Uploads:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str) -> Uploads:
        engine = _create_engine(url)
        migrate(engine)
        return cls(engine)

    def add(self, kind: UploadKind, upload_id: str, owner: str | None) -> Upload:
        upload = Upload(upload_id, kind, owner, time.time())
        with self._engine.begin() as conn:
            conn.execute(
                uploads_table.insert().values(
                    id=upload.id, kind=kind, owner=owner, created_at=upload.created_at
                )
            )
        return upload

    def get(self, kind: UploadKind, upload_id: str) -> Upload | None:
        query = select(uploads_table).where(
            uploads_table.c.id == upload_id, uploads_table.c.kind == kind
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return Upload(row.id, row.kind, row.owner, row.created_at)

    def close(self) -> None:
        self._engine.dispose()
