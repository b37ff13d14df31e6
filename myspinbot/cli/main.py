"""`myspinbot`: run the platform, and submit and follow jobs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
import httpx
from rich.console import Console
from rich.table import Table

from myspinbot import __version__
from myspinbot.settings import Settings

console = Console()
DEFAULT_URL = "http://127.0.0.1:8080"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="myspinbot")
def cli() -> None:
    """MySpinBot: personalized talking-avatar videos, local-first.

    Start everything with `myspinbot up`, then open the printed URL, or use the
    `train`, `generate`, `jobs`, `status`, `watch`, `cancel` and `retry` commands here;
    `jobs delete` and `profiles delete` delete for good.
    """


# --- running the platform ---------------------------------------------------------------------
@cli.command()
@click.option("--host", default=None, help="Address the gateway listens on [127.0.0.1].")
@click.option("--port", type=int, default=None, help="Gateway port [8080].")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where embedded Redis, S3 and SQLite keep data [./.myspinbot].",
)
@click.option(
    "--function",
    "functions",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Run these function directories instead of functions/*.",
)
def up(
    host: str | None, port: int | None, data_dir: Path | None, functions: tuple[Path, ...]
) -> None:
    """Start the whole platform on embedded defaults (Ctrl-C stops it).

    Every process it starts is kept running: one that dies is restarted (an embedded
    server on the same port and data).

    Uses MYSPINBOT_REDIS_URL / MYSPINBOT_S3_ENDPOINT / MYSPINBOT_DATABASE_URL when
    set; otherwise starts a local redis-server and S3 server and uses SQLite, all
    under the data directory.
    """
    from myspinbot.platform.supervisor import Platform, StartInterrupted

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v
    }
    settings = Settings(**overrides)
    # No markup: the lines it relays (a start-up step's output) may hold "[...]" text.
    platform = Platform(
        settings, list(functions) or None, say=lambda line: console.print(line, markup=False)
    )
    console.print(
        f"[bold]MySpinBot {__version__}[/] starting (data in {settings.data_dir.resolve()})"
    )
    # The children run in their own sessions: a Ctrl-C during the start must still stop
    # them, not leave them behind.
    platform.handle_signals()
    try:
        platform.start()
        gw = platform.urls["gateway"]
        console.print(
            f"\n[bold green]Ready.[/]  {gw}/  ·  API docs {gw}/docs  ·  "
            f"health {gw}/health  ·  metrics {gw}/metrics"
        )
        link = platform.login_link()
        if link:
            # One line of its own, no markup: terminals make it clickable; it works once.
            console.print(f"Sign in: {link}", markup=False, highlight=False, soft_wrap=True)
        if settings.base_model in (None, "tiny", "sd15-arch"):
            console.print(
                f"[yellow]Note:[/] no real base model is configured, so training uses the "
                f"built-in `{settings.base_model or 'tiny'}` model with random weights: it "
                "renders noise, not people. Set MYSPINBOT_BASE_MODEL to a Stable Diffusion 1.5 "
                "directory (or hub id) for real results."
            )
        console.print("Press Ctrl-C to stop.")
        platform.serve_forever()
    except StartInterrupted:
        pass
    except Exception as exc:
        # Whatever failed (a start-up step, a function.yaml the runtime refuses), the servers
        # started so far run in their own sessions: stop them, then say why, once.
        console.print(f"[red]{exc}[/]")
        platform.stop()
        raise SystemExit(1) from None
    console.print("\nStopping…")
    platform.stop()
    console.print("Stopped.")


@cli.command()
@click.option(
    "--preset",
    type=click.Choice(["tiny", "sd15-arch"]),
    default=None,
    help="Export a built-in random-weight model instead of MYSPINBOT_BASE_MODEL.",
)
@click.option("--base-model", default=None, help="Diffusers SD 1.5 directory or hub id to export.")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Triton model repository to write [MYSPINBOT_TRITON_REPOSITORY or ./triton-models].",
)
@click.option("--device", default=None, help="Export on this torch device [cuda if present].")
@click.option(
    "--dtype",
    type=click.Choice(["fp16", "fp32"]),
    default=None,
    help="Weight type of the graphs [fp16 on a GPU, fp32 on a CPU].",
)
def export(
    preset: str | None,
    base_model: str | None,
    output: Path | None,
    device: str | None,
    dtype: str | None,
) -> None:
    """Export a base model to ONNX for Triton (text encoder, UNet, VAE decoder).

    fp32 on a CPU, fp16 on a GPU (or --dtype). Each graph is checked against PyTorch before it is
    written. `myspinbot up` runs this itself when the repository is missing or stale.
    """
    from myspinbot.imaging.export import ExportError, export_repository
    from myspinbot.triton.repository import default_repository

    if preset and base_model:
        raise click.UsageError("give --preset or --base-model, not both")
    settings = Settings()
    repository = (output or default_repository(settings)).resolve()
    spec = preset or base_model or settings.base_model
    with console.status("exporting…") as status:
        try:
            result = export_repository(
                spec,
                repository,
                models_dir=settings.models_dir,
                device=device or settings.device,
                dtype=dtype,
                progress=lambda message: status.update(message + "…"),
            )
        except ExportError as exc:
            raise click.ClickException(str(exc)) from None
    table = Table(title=f"Exported {result.base.spec} ({result.dtype}) in {result.seconds:.1f} s")
    table.add_column("model")
    table.add_column("max |ONNX - PyTorch|", justify="right")
    for name, diff in result.max_abs_diff.items():
        table.add_row(name, f"{diff:.2e}")
    console.print(table)
    console.print(f"Triton model repository: {repository}")


@cli.command(hidden=True)
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=8080)
def gateway(host: str, port: int) -> None:
    """Run only the gateway (the supervisor starts it this way)."""
    import uvicorn

    from gateway.app import create_app

    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        ws_ping_interval=20,
        # A WebSocket message is a small JSON command: the JSON body limit applies.
        ws_max_size=settings.max_json_bytes,
    )


@cli.group(hidden=True)
def function() -> None:
    """Run one function replica (the supervisor starts them this way)."""


@function.command("run")
@click.argument("function_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--replica", type=int, default=0, help="Replica index (names its stream consumer).")
@click.option("--http-port", type=int, default=None, help="Port of the http trigger.")
def function_run(function_dir: Path, replica: int, http_port: int | None) -> None:
    from myspinbot.runtime.process import Replica

    raise SystemExit(Replica(function_dir, replica, Settings(), http_port=http_port).run())


# --- using the platform ---------------------------------------------------------------------------
url_option = click.option(
    "--url",
    envvar="MYSPINBOT_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Gateway URL (env MYSPINBOT_URL).",
)


def _api(url: str, method: str, path: str, **kwargs: Any) -> Any:
    from myspinbot.cli.credentials import auth_headers

    try:
        resp = httpx.request(
            method, url.rstrip("/") + path, timeout=60, headers=auth_headers(), **kwargs
        )
    except httpx.TransportError as exc:
        raise click.ClickException(
            f"cannot reach the gateway at {url} ({exc}); is `myspinbot up` running?"
        ) from None
    body = (
        resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    )
    if resp.status_code >= 400:
        raise click.ClickException(f"{resp.status_code}: {body.get('error', resp.text)}")
    return body


def _follow_or_print(url: str, job_id: str, no_follow: bool) -> None:
    if no_follow:
        console.print(job_id)
        return
    from myspinbot.cli.follow import follow

    console.print(f"job [bold]{job_id}[/]")
    final = follow(url, job_id, console)
    if final.get("state") == "completed":
        if final.get("result"):
            console.print_json(json.dumps(final["result"]))
    else:
        raise click.ClickException(
            f"job {final.get('state')}: {final.get('error') or final.get('message')}"
        )


@cli.command()
@url_option
@click.option(
    "--image",
    "images",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A photo of the person (repeat for 1-50 photos).",
)
@click.option(
    "--voice",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A 3-30 s voice clip.",
)
@click.option("--voice-text", help="What is said in the voice clip.")
@click.option("--name", required=True, help="Profile name.")
@click.option("--options", "options_json", default=None, help="JSON, e.g. '{\"steps\": 300}'.")
@click.option("--no-follow", is_flag=True, help="Print the job id and return.")
def train(
    url: str,
    images: tuple[Path, ...],
    voice: Path | None,
    voice_text: str | None,
    name: str,
    options_json: str | None,
    no_follow: bool,
) -> None:
    """Train a profile from photos (and a voice clip), following it live."""
    files = [("images", (p.name, p.read_bytes())) for p in images]
    if voice:
        files.append(("voice", (voice.name, voice.read_bytes())))
    data = {
        "name": name,
        **({"voice_text": voice_text} if voice_text else {}),
        **({"options": options_json} if options_json else {}),
    }
    job = _api(url, "POST", "/api/train", files=files, data=data)
    _follow_or_print(url, job["jobId"], no_follow)


@cli.command()
@url_option
@click.option("--profile", "profile_id", help="Profile id (from `myspinbot train`).")
@click.option("--narration", help="The words to speak (direct mode).")
@click.option("--prompt", help="A topic; an LLM writes the script (guided mode).")
@click.option("--stage", help="Scene description.")
@click.option(
    "--portrait",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use this image as the portrait (uploaded first).",
)
@click.option(
    "--narration-audio",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your own recording narrates the video (uploaded first); --narration, if given, "
    "is its transcript (lip shapes per sound).",
)
@click.option(
    "--options",
    "options_json",
    default=None,
    help='JSON object, e.g. \'{"portrait": "render", "steps": 30, "seed": 1}\'.',
)
@click.option("--no-follow", is_flag=True, help="Print the job id and return.")
def generate(
    url: str,
    profile_id: str | None,
    narration: str | None,
    prompt: str | None,
    stage: str | None,
    portrait: Path | None,
    narration_audio: Path | None,
    options_json: str | None,
    no_follow: bool,
) -> None:
    """Make a video: --narration for direct mode, --prompt for guided mode, or
    --narration-audio with your own recording.

    The portrait is the profile's photo, a render of the profile in the --stage scene
    (options.portrait = "render"), or an image of your own (--portrait FILE).
    """
    if narration_audio is not None and prompt:
        raise click.UsageError("--narration-audio goes with direct mode, not --prompt")
    if narration_audio is None and bool(narration) == bool(prompt):
        raise click.UsageError("give exactly one of --narration (direct) or --prompt (guided)")
    body: dict[str, Any] = {
        "mode": "guided" if prompt else "direct",
        "narration": narration,
        "prompt": prompt,
        "stage": stage,
        "profileId": profile_id,
    }
    options = json.loads(options_json) if options_json else {}
    if portrait is not None:
        with portrait.open("rb") as f:
            uploaded = _api(url, "POST", "/api/portraits", files={"image": (portrait.name, f)})
        options.update(portrait="upload", portraitImage=uploaded["portraitId"])
    if narration_audio is not None:
        with narration_audio.open("rb") as f:
            files = {"audio": (narration_audio.name, f)}
            recorded = _api(url, "POST", "/api/narrations", files=files)
        options.update(narrationAudio=recorded["narrationId"])
    if options:
        body["options"] = options
    job = _api(url, "POST", "/api/generate", json={k: v for k, v in body.items() if v is not None})
    _follow_or_print(url, job["jobId"], no_follow)


@cli.group(invoke_without_command=True)
@url_option
@click.option("--limit", default=20, show_default=True)
@click.option("--type", "job_type", type=click.Choice(["train", "generate"]))
@click.option(
    "--state", type=click.Choice(["queued", "running", "completed", "failed", "cancelled"])
)
@click.pass_context
def jobs(ctx: click.Context, url: str, limit: int, job_type: str | None, state: str | None) -> None:
    """List jobs, newest first (`myspinbot jobs delete ID` deletes one)."""
    if ctx.invoked_subcommand is not None:
        return
    params = {
        "limit": limit,
        **({"type": job_type} if job_type else {}),
        **({"state": state} if state else {}),
    }
    page = _api(url, "GET", "/api/jobs", params=params)
    table = Table("type", "state", "progress", "step", "message")
    table.add_column("id", no_wrap=True, min_width=32)  # copied into `status ID`; never cut
    for j in page["jobs"]:
        table.add_row(
            j["type"],
            j["state"],
            f"{j['progress']:.0f}%",
            j.get("step") or "",
            (j.get("error") or j.get("message") or "")[:60],
            j["jobId"],
        )
    console.print(table)
    console.print(f"{len(page['jobs'])} of {page['total']} jobs")


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def _delete(url: str, path: str, what: str, yes: bool) -> None:
    if not yes:
        click.confirm(f"Delete {what} for good?", abort=True)
    _api(url, "DELETE", path)
    console.print(f"deleted {what}")


@jobs.command("delete")
@url_option
@click.argument("job_id")
@yes_option
def jobs_delete(url: str, job_id: str, yes: bool) -> None:
    """Delete a finished job: its uploaded inputs, its outputs and its records.

    A queued or running job is refused: cancel it first. A training's profile stays
    (`myspinbot profiles delete` deletes it).
    """
    _delete(url, f"/api/jobs/{job_id}", f"job {job_id}", yes)


@cli.group()
def profiles() -> None:
    """List and delete trained profiles."""


@profiles.command("list")
@url_option
def profiles_list(url: str) -> None:
    """Trained profiles, newest first."""
    table = Table("name", "base model", "photos")
    table.add_column("id", no_wrap=True, min_width=32)
    for p in _api(url, "GET", "/api/profiles")["profiles"]:
        photos = len((p.get("metadata") or {}).get("photos") or [])
        table.add_row(p["name"], p.get("base_model") or "", str(photos), p["id"])
    console.print(table)


@profiles.command("delete")
@url_option
@click.argument("profile_id")
@yes_option
def profiles_delete(url: str, profile_id: str, yes: bool) -> None:
    """Delete a profile and everything made of the person: photos, voice clip and voice
    profile, LoRA files, rendered portraits and videos (the jobs made with it), its model
    in Triton, and the records."""
    _delete(url, f"/api/profiles/{profile_id}", f"profile {profile_id}", yes)


@cli.command()
@url_option
@click.argument("job_id")
def status(url: str, job_id: str) -> None:
    """Show one job's state."""
    console.print_json(json.dumps(_api(url, "GET", f"/api/status/{job_id}")))


@cli.command()
@url_option
@click.argument("job_id")
def watch(url: str, job_id: str) -> None:
    """Follow a job live until it ends."""
    _follow_or_print(url, job_id, no_follow=False)


@cli.command()
@url_option
@click.argument("job_id")
def cancel(url: str, job_id: str) -> None:
    """Cancel a queued or running job."""
    _api(url, "POST", f"/api/jobs/{job_id}/cancel")
    console.print(f"cancel requested for {job_id}")


@cli.command()
@url_option
@click.argument("job_id")
@click.option("--no-follow", is_flag=True, help="Print the job id instead of following it.")
def retry(url: str, job_id: str, no_follow: bool) -> None:
    """Run a failed job again with its stored inputs (e.g. one in the dead letter)."""
    body = _api(url, "POST", f"/api/jobs/{job_id}/retry")
    console.print(f"queued again as attempt {body['attempt']}")
    _follow_or_print(url, job_id, no_follow)


# --- accounts (through the API: admins manage users, everyone their own tokens) -------------------
def _when(ts: float | None) -> str:
    import datetime

    if ts is None:
        return "never"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@cli.group()
def users() -> None:
    """Manage users (admins only): add, list, remove."""


@users.command("init")
@click.option(
    "--url",
    envvar="MYSPINBOT_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The address people open the UI at (for the login link).",
)
def users_init(url: str) -> None:
    """Create the owner (admin) account if there is no admin, and print a one-time login link.

    For deployments without `myspinbot up` (Compose, Kubernetes): run it once where
    MYSPINBOT_DATABASE_URL reaches the database. It talks to SQL directly, not to the
    gateway. The owner's API token is printed only when the account is created.
    """
    from myspinbot.accounts import Accounts
    from myspinbot.accounts.service import OWNER_NAME

    settings = Settings()
    accounts = Accounts.open(settings.sqlalchemy_url)
    try:
        owner = accounts.owner()
        if owner is None:
            owner = accounts.add_user(OWNER_NAME, "admin")
            token = accounts.create_token(owner, "cli (users init)").token
            console.print(f"created the owner account {owner.name!r} (admin); its API token:")
            print(token)
        login = accounts.create_login_token(owner, settings.login_link_ttl_s)
    finally:
        accounts.close()
    print(f"Sign in: {url.rstrip('/')}/?token={login}")


@users.command("add")
@url_option
@click.argument("name")
@click.option("--role", type=click.Choice(["member", "admin"]), default="member", show_default=True)
def users_add(url: str, name: str, role: str) -> None:
    """Add a user; prints their first API token (shown only this once)."""
    user = _api(url, "POST", "/api/users", json={"name": name, "role": role})
    console.print(f"added {user['role']} [bold]{user['name']}[/] ({user['id']})")
    console.print("Their API token (shown only now; give it to them):")
    print(user["token"])


@users.command("list")
@url_option
def users_list(url: str) -> None:
    """List users."""
    table = Table("name", "role", "id")
    for u in _api(url, "GET", "/api/users")["users"]:
        table.add_row(u["name"], u["role"], u["id"])
    console.print(table)


@users.command("remove")
@url_option
@click.argument("name")
def users_remove(url: str, name: str) -> None:
    """Remove a user (by name or id) and their tokens and sessions."""
    _api(url, "DELETE", f"/api/users/{name}")
    console.print(f"removed {name}")


@cli.group()
def tokens() -> None:
    """Manage API tokens: create, list, revoke."""


@tokens.command("create")
@url_option
@click.option("--name", default="api", show_default=True, help="What it is for.")
@click.option("--expires-days", type=float, default=None, help="Expire after this many days.")
@click.option("--user", default=None, help="Admins: create it for this user (name or id).")
def tokens_create(url: str, name: str, expires_days: float | None, user: str | None) -> None:
    """Create an API token; prints it once (only its hash is stored)."""
    body: dict[str, Any] = {"name": name}
    if expires_days is not None:
        body["expiresInDays"] = expires_days
    if user is not None:
        body["user"] = user
    made = _api(url, "POST", "/api/tokens", json=body)
    console.print(
        f"token [bold]{made['id']}[/] for {made['userName']}, expires {_when(made['expiresAt'])}"
        " (shown only now):",
        highlight=False,
    )
    print(made["token"])


@tokens.command("list")
@url_option
@click.option("--all", "all_users", is_flag=True, help="Admins: everyone's tokens.")
def tokens_list(url: str, all_users: bool) -> None:
    """List API tokens (never the tokens themselves)."""
    params = {"all": "true"} if all_users else {}
    table = Table("id", "name", "user", "created", "expires", "state")
    for t in _api(url, "GET", "/api/tokens", params=params)["tokens"]:
        state = "active" if t["active"] else ("revoked" if t["revokedAt"] else "expired")
        table.add_row(
            t["id"], t["name"], t["userName"], _when(t["createdAt"]), _when(t["expiresAt"]), state
        )
    console.print(table)


@tokens.command("revoke")
@url_option
@click.argument("token_id")
def tokens_revoke(url: str, token_id: str) -> None:
    """Revoke an API token (by the id `tokens list` shows); it stops working at once."""
    _api(url, "DELETE", f"/api/tokens/{token_id}")
    console.print(f"revoked {token_id}")


def main() -> None:  # pragma: no cover - console script entry
    cli(prog_name=os.path.basename(sys.argv[0]))
