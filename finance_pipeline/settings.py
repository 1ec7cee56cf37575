"""One settings object for the whole product, read from env vars (prefix FP_) and an optional .env."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from finance_pipeline.stripe_sync.version import STRIPE_API_VERSION

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration: where the warehouse lives, where files land, and secrets.

    `FP_WAREHOUSE_URL` is the one switch between the embedded default (SQLite) and production
    (PostgreSQL, e.g. `postgresql+psycopg://user@host/db`).
    """

    model_config = SettingsConfigDict(env_prefix="FP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / "data")
    warehouse_url: str | None = None
    landing_dir: Path | None = None
    reports_dir: Path | None = None
    # Largest landed CSV file ingested, in bytes: a larger one is rejected unread (its 100,000-row
    # limit is reached well before this size).
    landing_max_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Refresh and sync requests (docs/requests.md) run inside the API process instead of waiting for
    # the Dagster daemon's sensor. Unset: on with the embedded SQLite warehouse (no daemon may run),
    # off with PostgreSQL (production runs the daemon).
    requests_inline: bool | None = None
    # Master key (Fernet, urlsafe base64 of 32 bytes) that encrypts stored Stripe keys. When unset,
    # a key file is created once in data_dir with 0600 permissions (embedded default only).
    secret_key: SecretStr | None = None
    # During a key rotation (docs/security.md): the keys FP_SECRET_KEY replaced, comma-separated,
    # newest first. Stored secrets decrypt with any of them until `finance-pipeline secrets
    # reencrypt` has rewritten them under FP_SECRET_KEY; then unset it.
    secret_key_previous: SecretStr | None = None
    stripe_api_version: str = STRIPE_API_VERSION
    # Where Stripe connections made through the API (the 003 margins API's connect, the v1 API's
    # ingest/stripe) check their key and then sync from: Stripe, or a stand-in in tests and demos.
    stripe_api_base: str = "https://api.stripe.com"
    # Stripe allows 100 read ops/s live and 25 in test mode; the limiter stays just below.
    stripe_rate_limit_rps: float = 90.0
    stripe_max_attempts: int = 8
    # A Stripe request with no answer after this long (a hung connection) is abandoned and
    # retried like a dropped one; the SDK's own default waits 80 s.
    stripe_timeout_seconds: float = Field(default=30.0, gt=0)
    stripe_page_size: int = 100
    # Scheduled refreshes fan out by workspace (docs/scaling.md): this many workspaces per run, each
    # run tagged with its workspaces so the run queue serializes a workspace's runs and a failing
    # workspace fails only its own run; 0 keeps one run over every workspace.
    fanout_batch_size: int = Field(default=1, ge=0)
    # Executor of the refresh jobs (daily_refresh, requested_refresh, rebuild_marts): multiprocess
    # on the launching machine, or celery (dagster-celery) on the workers of scripts/celery.sh,
    # through this broker (Redis from Debian's redis-server) and result backend.
    executor: Literal["multiprocess", "celery"] = "multiprocess"
    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    celery_backend_url: str = "redis://127.0.0.1:6379/1"
    # Advisory memos: an OpenAI-compatible chat-completions endpoint (FP_AI_BASE_URL such as
    # https://router.huggingface.co/v1, FP_AI_API_KEY, FP_AI_MODEL). All unset: the rule-based
    # writer only. ai_provider_name is what memos report as `provider` (e.g. "huggingface").
    ai_base_url: str | None = None
    ai_api_key: SecretStr | None = None
    ai_model: str | None = None
    ai_provider_name: str = "openai_compatible"
    ai_timeout_seconds: float = 20.0
    # Report emails (finance_pipeline/reports/email.py): the SMTP relay. No host or no from
    # address: no email is sent. STARTTLS is on by default; the password is never logged.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = None
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = 30.0
    # Read API (docs/api.md). HS256 key that signs access tokens; when unset, a key file is created
    # once in data_dir with 0600 permissions (embedded default only, like secret_key).
    jwt_secret: SecretStr | None = None
    jwt_access_ttl_seconds: int = Field(default=3600, ge=1)
    # Requests per minute per token (per client address for register and login), every worker.
    api_rate_limit_per_minute: int = Field(default=100, ge=1)
    # Failed sign-ins allowed per email in a 15-minute window; past it, logins of that email get
    # 429 with Retry-After until the window ends (password guessing from many addresses).
    api_login_failures_per_window: int = Field(default=10, ge=1)
    # Largest request body the API reads, in bytes (docs/api.md, Request bodies): 100,000 ingest
    # items fit. A larger body is refused with 413 before any of it reaches a route.
    api_max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    # How long an Idempotency-Key's stored response is replayed.
    api_idempotency_ttl_seconds: int = Field(default=86_400, ge=1)
    # How long a key stays "in progress" without an answer stored: past it, the request that took
    # it is deemed gone (its worker killed, the database lost before the key could be freed) and
    # a retry with the key runs. Longer than any request takes.
    api_idempotency_lease_seconds: int = Field(default=120, ge=1)
    # Bearer secret of the scheduler calling GET /api/stripe/revenue-sync (the 003 margins API's
    # cron); unset: only members' credentials can trigger a sync.
    cron_secret: SecretStr | None = None
    # Lifetime of a signed export download link (platform finance API).
    api_export_link_ttl_seconds: int = Field(default=900, ge=1)
    # Reads of a workspace with a refresh still queued or running (after an ingest) wait at most
    # this long for it before answering with a refresh_pending warning (docs/api.md).
    api_read_wait_seconds: float = Field(default=20.0, ge=0)

    @property
    def resolved_warehouse_url(self) -> str:
        """The SQLAlchemy URL of the warehouse (SQLite file under data_dir unless set)."""
        return self.warehouse_url or f"sqlite:///{self.data_dir / 'warehouse.sqlite'}"

    @property
    def resolved_requests_inline(self) -> bool:
        """Whether the API runs pipeline requests in its own process (FP_REQUESTS_INLINE)."""
        if self.requests_inline is not None:
            return self.requests_inline
        return self.resolved_warehouse_url.startswith("sqlite")

    @property
    def resolved_landing_dir(self) -> Path:
        """Folder where cost/revenue/FX CSV files are dropped for the landing sensor."""
        return self.landing_dir or self.data_dir / "landing"

    @property
    def resolved_reports_dir(self) -> Path:
        """Folder where CSV/PDF reports are written."""
        return self.reports_dir or self.data_dir / "reports"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read lazily (never at import time)."""
    return Settings()
