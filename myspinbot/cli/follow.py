"""Following a job live over the gateway's WebSocket, with a progress bar."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from myspinbot.cli.credentials import auth_headers

TERMINAL = {"completed", "failed", "cancelled"}


def ws_url(base: str) -> str:
    return base.replace("https://", "wss://").replace("http://", "ws://").rstrip("/") + "/ws"


def follow(base_url: str, job_id: str, console: Console) -> dict[str, Any]:
    """Show the job's progress until it ends; returns the last message (its final state)."""
    last_event: str | None = None
    final: dict[str, Any] = {}
    columns = (
        TextColumn("[bold]{task.fields[state]:<9}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("waiting…", total=100, state="queued")
        attempts = 0
        while not final:
            try:
                with connect(
                    ws_url(base_url), open_timeout=10, additional_headers=auth_headers()
                ) as ws:
                    sub = {"type": "subscribe", "jobId": job_id}
                    if last_event:
                        sub["lastEventId"] = last_event
                    ws.send(json.dumps(sub))
                    attempts = 0
                    for raw in ws:
                        msg = json.loads(raw)
                        if msg.get("type") == "error" and msg.get("code"):
                            raise SystemExit(msg.get("message", "subscription refused"))
                        last_event = msg.get("eventId") or last_event
                        bar.update(
                            task,
                            completed=msg.get("progress") or 0,
                            description=msg.get("message") or msg.get("step") or "",
                            state=msg.get("state") or "",
                        )
                        if msg.get("state") in TERMINAL:
                            final = msg
                            break
            except InvalidStatus as exc:  # refused (401: no or a bad credential): final
                raise SystemExit(_refusal(exc)) from None
            except (ConnectionClosed, OSError) as exc:
                attempts += 1
                if attempts > 30:
                    raise SystemExit(f"lost the connection to {base_url}: {exc}") from None
                bar.update(task, description=f"reconnecting… ({exc.__class__.__name__})")
                time.sleep(min(0.5 * attempts, 5))
    return final


def _refusal(exc: InvalidStatus) -> str:
    try:
        message = json.loads(exc.response.body or b"{}").get("error")
    except ValueError:
        message = None
    return f"{exc.response.status_code}: {message or 'the gateway refused the connection'}"
