"""`myspinbot users` and `myspinbot tokens` against a real platform, and where the CLI
finds its own credential."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, RunningPlatform


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "myspinbot", *args],
        cwd=ROOT,
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def token_in(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("msb_"))


def test_users_and_tokens_through_the_cli(platform: RunningPlatform) -> None:
    owner = platform.cli_env()
    added = run(owner, "users", "add", "clara")
    assert added.returncode == 0, added.stderr
    clara = platform.cli_env(token_in(added.stdout))
    listed = run(owner, "users", "list")
    assert "clara" in listed.stdout and "member" in listed.stdout and "owner" in listed.stdout
    # A member manages her own tokens, not users.
    refused = run(clara, "users", "list")
    assert refused.returncode == 1 and "403" in refused.stderr and "admin" in refused.stderr
    made = run(clara, "tokens", "create", "--name", "ci", "--expires-days", "30")
    assert made.returncode == 0, made.stderr
    ci_token = token_in(made.stdout)
    tokens = run(clara, "tokens", "list")
    assert "ci" in tokens.stdout and "active" in tokens.stdout and ci_token not in tokens.stdout
    token_id = next(line.split()[1] for line in tokens.stdout.splitlines() if " ci " in line)
    ci = platform.cli_env(ci_token)
    assert run(ci, "jobs").returncode == 0
    revoked = run(clara, "tokens", "revoke", token_id)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in run(clara, "tokens", "list").stdout
    after = run(ci, "jobs")
    assert after.returncode == 1 and "401" in after.stderr and "Traceback" not in after.stderr
    # An admin makes a token for someone else, and removes a user.
    theirs = run(owner, "tokens", "create", "--user", "clara", "--name", "handed-over")
    assert theirs.returncode == 0 and "for clara" in theirs.stdout, theirs.stderr
    assert run(owner, "users", "remove", "clara").returncode == 0
    assert run(clara, "jobs").returncode == 1
    assert "clara" not in run(owner, "users", "list").stdout


def test_the_cli_finds_the_owner_token_in_the_data_dir(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MYSPINBOT_")}
    base["MYSPINBOT_URL"] = platform.url
    found = run({**base, "MYSPINBOT_DATA_DIR": str(platform.data_dir)}, "jobs")
    assert found.returncode == 0, found.stderr
    none = run({**base, "MYSPINBOT_DATA_DIR": str(tmp_path)}, "jobs")
    assert none.returncode == 1 and "401" in none.stderr and "Sign in" in none.stderr
    watch = run({**base, "MYSPINBOT_DATA_DIR": str(tmp_path)}, "watch", "nope")
    assert watch.returncode == 1 and "401" in watch.stderr, watch.stderr


def test_users_init_makes_the_first_admin_once(db_url: str) -> None:
    """Compose/Kubernetes have no `up`: `myspinbot users init` against the database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYSPINBOT_")}
    env.update(MYSPINBOT_DATABASE_URL=db_url, MYSPINBOT_URL="https://api.example.com")
    first = run(env, "users", "init")
    assert first.returncode == 0, first.stderr
    assert "created the owner account" in first.stdout
    token = token_in(first.stdout)
    assert "Sign in: https://api.example.com/?token=msb_" in first.stdout
    again = run(env, "users", "init")
    assert again.returncode == 0 and "created" not in again.stdout and token not in again.stdout
    assert "Sign in: https://api.example.com/?token=msb_" in again.stdout
