"""All configuration in one place, read from `MYSPINBOT_*` environment variables.

Every process (gateway, function replicas, CLI) builds its `Settings` from the
environment; `myspinbot up` passes the resolved values to its children through
the same variables, so a function started by hand behaves like one started by
the supervisor.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MYSPINBOT_", extra="ignore")

    data_dir: Path = Field(Path(".myspinbot"), description="Where embedded services keep data.")

    # --- Redis: the real-time bus -------------------------------------------------
    redis_url: str | None = Field(
        None, description="Redis to use; when unset `myspinbot up` starts a local redis-server."
    )
    redis_appendfsync: Literal["always", "everysec"] = Field(
        "always",
        description="fsync policy of the embedded Redis: `always` loses no accepted job on a "
        "crash (docs/architecture.md); `everysec` may lose the last second, for more speed.",
    )

    # --- SQL: durable job history ---------------------------------------------------
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is a SQLite file in the data dir."
    )

    # --- S3: artifacts ----------------------------------------------------------------
    s3_endpoint: str | None = Field(
        None, description="S3 endpoint URL; when unset `myspinbot up` starts an embedded one."
    )
    s3_bucket: str = "myspinbot"
    s3_access_key: str = "myspinbot"
    s3_secret_key: str = "myspinbot-secret"
    s3_region: str = "us-east-1"
    s3_public_endpoint: str | None = Field(
        None, description="S3 address for download links, when people reach S3 elsewhere."
    )
    link_ttl_s: int = Field(
        900,
        ge=1,
        le=7 * 24 * 3600,
        description="Life of a download link. Links are signed by the gateway at every read "
        "and never stored, so a short life costs nothing: reading again gives a fresh one.",
    )

    # --- Gateway ----------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8080
    status_url: str | None = Field(
        None, description="Base URL of the status function's HTTP trigger."
    )
    max_upload_mb: float = Field(20.0, gt=0, description="Per-file upload limit.")
    max_images: int = Field(50, ge=1)
    max_json_bytes: int = Field(
        65536,
        ge=1024,
        description="Body limit of every route but the uploads (bytes as they arrive, "
        "chunked bodies too), and of one WebSocket message.",
    )
    max_concurrent_uploads: int = Field(
        8,
        ge=1,
        description="Uploads one gateway process receives at once; more answer 503 with "
        "Retry-After (each is spooled to disk, up to the whole-request limit).",
    )
    upload_retry_after_s: int = Field(
        5, ge=1, description="Retry-After of a 503 for too many uploads at once."
    )
    ws_queue_size: int = Field(
        256, ge=1, description="Events buffered per WebSocket client before it is dropped."
    )

    # --- Accounts and credentials (docs/security.md) -----------------------------------
    token: SecretStr | None = Field(
        None,
        description="The CLI's API token; unset: <data_dir>/secrets/owner.token (written by "
        "the first `myspinbot up`).",
    )
    internal_token: SecretStr | None = Field(
        None,
        description="The platform's internal credential: function HTTP triggers (status) "
        "accept only it. `myspinbot up` generates it into <data_dir>/secrets/internal.token.",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token Prometheus sends to scrape the gateway's /metrics; "
        "`myspinbot up` generates it into <data_dir>/secrets/metrics.token.",
    )
    allowed_hosts: str | None = Field(
        None,
        description="Comma-separated host names the gateway answers to (Host header; "
        "DNS-rebinding defence). Unset: the host `up` serves, localhost names and IP "
        "addresses. `*` allows any.",
    )
    session_ttl_s: float = Field(
        7 * 24 * 3600, gt=0, description="How long a browser session lasts after sign-in."
    )
    auth_outage_grace_s: float = Field(
        900.0,
        ge=0,
        description="While SQL is unreachable, a credential SQL accepted within this many "
        "seconds keeps working (jobs go on through an outage); 0: none does.",
    )
    login_link_ttl_s: float = Field(
        24 * 3600, gt=0, description="How long the one-time login link `up` prints works."
    )

    # --- Jobs and streams ------------------------------------------------------------
    reclaim_idle_s: float = Field(
        10.0, gt=0, description="Idle time after which another replica reclaims a message."
    )
    job_events_maxlen: int = Field(1000, ge=10, description="Cap of each per-job event stream.")
    job_ttl_s: int = Field(7 * 24 * 3600, description="How long finished jobs stay in Redis.")
    history_retry_max_s: float = Field(
        5.0,
        gt=0,
        description="Longest pause between ws-relay's retries of Redis or SQL (it retries "
        "for as long as it takes; SQL writes wait in an outbox meanwhile).",
    )
    idempotency_ttl_s: int = 24 * 3600
    backlog_max: int = Field(
        10_000,
        ge=1,
        description="Jobs of one type waiting or running before submits answer 429.",
    )
    backlog_retry_after_s: int = Field(
        5, ge=1, description="Retry-After of a 429 for a full backlog."
    )
    user_max_queued: int = Field(
        20,
        ge=1,
        description="A member's jobs waiting to start before their submits answer 429 "
        "(admins are not limited).",
    )
    user_max_active: int = Field(
        25,
        ge=1,
        description="A member's unfinished jobs (waiting or running) before their submits "
        "answer 429; this also bounds how many of them run at once.",
    )
    user_retry_after_s: int = Field(
        30, ge=1, description="Retry-After of a 429 for a member over a per-user job limit."
    )
    submit_orphan_grace_s: float = Field(
        600.0,
        gt=0,
        description="Inputs of a submit that never queued (the gateway died) are deleted "
        "after this long.",
    )
    retention_days: float | None = Field(
        None,
        gt=0,
        description="Finished jobs (their inputs, outputs and records) and unused uploads "
        "older than this many days are deleted by ws-relay's retention sweep; unset: kept "
        "until someone deletes them. Profiles are never swept.",
    )
    retention_sweep_s: float = Field(
        3600.0, gt=0, description="How often the retention sweep runs, in seconds."
    )
    test_crash_before_queue: Path | None = Field(
        None,
        description="TEST HOOK, never set in production: while this file exists, a train "
        "submit deletes it and kills the gateway after storing inputs, before queueing.",
    )

    # --- Models -----------------------------------------------------------------------
    base_model: str | None = Field(
        None,
        description="Diffusers base model: a local directory, a hub id, or a built-in preset "
        "(`tiny`, `sd15-arch`: random weights). Unset: `tiny`, which renders noise, not people.",
    )
    device: str | None = Field(
        None, description="Torch device for models; default: cuda if present."
    )

    # --- Triton: inference server for the exported models ----------------------------
    triton_url: str | None = Field(
        None,
        description="Triton HTTP endpoint (host:port or URL); when unset `myspinbot up` starts "
        "the embedded tritonserver on the repository in `triton_repository`.",
    )
    triton_repository: Path | None = Field(
        None,
        description="Model repository the embedded tritonserver serves (default: "
        "triton-models/ of this checkout).",
    )
    triton_metrics_port: int | None = Field(
        None, description="Port of the embedded tritonserver's Prometheus metrics."
    )
    triton_retry_s: float = Field(
        20.0, ge=0, description="How long a request keeps retrying while Triton is unavailable."
    )
    lora_models_max: int = Field(
        4,
        ge=1,
        description="Per-profile LoRA models kept loaded in Triton before the least "
        "recently used is unloaded (each holds a UNet copy).",
    )
    # --- Hardened defaults (docs/security.md) -------------------------------------------
    triton_admin_key: str | None = Field(
        None,
        description="Secret sent as header `x-myspinbot-admin-key` with Triton model-repository "
        "requests (LoRA load/unload, the health check's index); tritonserver refuses them "
        "without it. `myspinbot up` generates one into <data_dir>/secrets/triton-admin.key.",
    )

    # --- Video generation -------------------------------------------------------------
    ollama_url: str | None = Field(
        None, description="Ollama server for `guided` mode; unset: guided mode is unavailable."
    )
    ollama_model: str = "llama3.1:8b"
    ollama_temperature: float = Field(0.7, ge=0, le=2)
    ollama_timeout_s: float = Field(120.0, gt=0)
    narration_max_seconds: float = Field(
        60.0, gt=0, description="Longest narration accepted, in seconds of speech."
    )
    tts_engine: str = Field(
        "auto",
        description="Speech engine: `auto` (flite if installed, else espeak), `flite` "
        "(CMU voices, matched to the profile's voice), `espeak` (many languages).",
    )
    tts_voice: str | None = Field(
        None,
        description="flite voice to use for every profile (slt, rms, awb, kal16); "
        "unset: the voice matched to each profile.",
    )
    animator: str = Field(
        "landmark",
        description="Talking-head animator: `landmark` (lip shapes per phoneme on a face "
        "mesh; built in) or `weightfree` (loudness only, no face mesh).",
    )
    upscaler: str = Field(
        "esrgan",
        description="Portrait upscaler, run once per portrait: `esrgan` (Real-ESRGAN x4plus, "
        "Lanczos if it cannot load) or `lanczos`. `options.upscale` frames always use Lanczos.",
    )
    video_fps: int = Field(25, ge=1, le=60)
    video_size: int = Field(512, ge=64, le=2048, description="Output video side in pixels.")

    # --- Processes --------------------------------------------------------------------
    metrics_port: int | None = Field(
        None, description="Port for this function replica's Prometheus endpoint."
    )
    function_dirs: list[Path] | None = Field(
        None, description="Function directories `myspinbot up` runs (default: functions/*)."
    )
    expected_functions: list[str] = Field(
        [],
        description="Functions the gateway's /health reports down until a replica of each "
        "has registered (`myspinbot up` sets it to the functions it starts).",
    )
    nuclio_processor_config: Path = Field(
        Path("/etc/nuclio/config/processor/processor.yaml"),
        description="Where Nuclio's processor keeps the deployed function config (read by a "
        "replica Nuclio started, for its stream triggers).",
    )
    log_level: str = "INFO"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'myspinbot.db').resolve()}"

    def require_redis_url(self) -> str:
        """The Redis URL, or a clear error: every process but `up` needs one given."""
        if not self.redis_url:
            raise RuntimeError(
                "MYSPINBOT_REDIS_URL is not set; start everything with `myspinbot up` "
                "(it starts Redis) or point MYSPINBOT_REDIS_URL at a Redis server"
            )
        return self.redis_url

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def trusted_hosts(self) -> list[str]:
        """Host names (no port) the gateway answers to; `*` means any."""
        if self.allowed_hosts:
            return [h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip()]
        return [self.host.lower(), "localhost", "127.0.0.1", "::1"]

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
