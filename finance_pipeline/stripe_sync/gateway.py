"""The pipeline's only door to Stripe: a StripeClient behind a rate limiter, backoff and counters."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stripe
from stripe._request_options import extract_options_from_dict

from finance_pipeline.lib.backoff import BackoffPolicy, parse_retry_after
from finance_pipeline.secrets import mask_key
from finance_pipeline.stripe_sync.ratelimit import TokenBucket
from finance_pipeline.stripe_sync.version import STRIPE_API_VERSION

# Requests that woke late leave at most 30 ms worth beyond the rate (3 at 100 req/s): well
# inside a Stripe-like server burst (~100 ms), whatever the scheduling of the processes sending.
LIMITER_MAX_LATE_SECONDS = 0.03


def account_pacing_file(api_base: str | None, account_id: str, livemode: bool) -> str:
    """The file through which every process on this host paces its calls to one Stripe account
    (`TokenBucket(state_file=...)`): Stripe's rate limit is per account, not per process."""
    ident = f"{api_base or 'https://api.stripe.com'}|{account_id}|{'live' if livemode else 'test'}"
    digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
    return str(Path(tempfile.gettempdir()) / "finance_pipeline-stripe-pacing" / digest)


class StripeSyncError(RuntimeError):
    """A sync that cannot proceed; the message says what to do."""


class StripePermissionDenied(StripeSyncError):
    """A restricted key lacks a permission the sync needs (HTTP 403)."""


class StripeAuthFailed(StripeSyncError):
    """Stripe rejected the key (HTTP 401)."""


@dataclass
class GatewayStats:
    """Requests, retries and waiting, for run metadata and benchmarks."""

    requests: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    errors_by_status: dict[str, int] = field(default_factory=dict)
    # Per request tag (the stream a thread reads for, see `request_tag`): requests, seconds
    # waited on the limiter, seconds in the HTTP call (benchmarks read where a stream's time goes).
    by_tag: dict[str, dict[str, float]] = field(default_factory=dict)
    # Per tag, requests sent in each whole second of the wall clock (`int(time.time())`).
    timeline: dict[str, dict[int, int]] = field(default_factory=dict)

    def add(self, other: GatewayStats) -> None:
        """Add another gateway's counters (another process's, for the same account) to these."""
        self.requests += other.requests
        self.retries += other.retries
        self.throttled_seconds += other.throttled_seconds
        for key, n in other.errors_by_status.items():
            self.errors_by_status[key] = self.errors_by_status.get(key, 0) + n
        for tag, counters in other.by_tag.items():
            mine = self.by_tag.setdefault(tag, {})
            for key, v in counters.items():
                mine[key] = mine.get(key, 0.0) + v
        for tag, seconds in other.timeline.items():
            line = self.timeline.setdefault(tag, {})
            for sec, n in seconds.items():
                line[sec] = line.get(sec, 0) + n


# The label a thread's requests are counted under in `GatewayStats.by_tag` (the sync engine sets
# it to the stream a thread reads for); unset: "". `flow` and `weight`: the stream whose share of
# the rate the request takes, and its weight (`TokenBucket.acquire`); unset: first come, first served.
request_tag = threading.local()


# resource name -> (list path template, retrieve path template)
RESOURCES: dict[str, tuple[str, str]] = {
    "customers": ("/v1/customers", "/v1/customers/{id}"),
    "products": ("/v1/products", "/v1/products/{id}"),
    "prices": ("/v1/prices", "/v1/prices/{id}"),
    "coupons": ("/v1/coupons", "/v1/coupons/{id}"),
    "subscriptions": ("/v1/subscriptions", "/v1/subscriptions/{id}"),
    "subscription_items": ("/v1/subscription_items", "/v1/subscription_items/{id}"),
    "invoices": ("/v1/invoices", "/v1/invoices/{id}"),
    "invoice_lines": ("/v1/invoices/{parent}/lines", ""),
    "invoice_payments": ("/v1/invoice_payments", "/v1/invoice_payments/{id}"),
    "charges": ("/v1/charges", "/v1/charges/{id}"),
    "refunds": ("/v1/refunds", "/v1/refunds/{id}"),
    "credit_notes": ("/v1/credit_notes", "/v1/credit_notes/{id}"),
    "credit_note_lines": ("/v1/credit_notes/{parent}/lines", ""),
    "balance_transactions": ("/v1/balance_transactions", "/v1/balance_transactions/{id}"),
    "events": ("/v1/events", "/v1/events/{id}"),
    "account": ("", "/v1/account"),
}


def _lazy_sdk_logging() -> None:
    """Let the SDK's request path format a log line only when something will emit it.

    stripe-python builds `log_debug("API response body", body=...)` on every request even with
    logging off: it decodes the whole page, scans it with a regex and `repr`s it (about 1 ms a
    page, bench/README.md). The wrappers call the SDK's own functions exactly when those would
    print or log, so what is printed or logged is unchanged. Idempotent.
    """
    import stripe._api_requestor as requestor_mod
    import stripe._util as util

    if getattr(requestor_mod.log_debug, "_lazy", False):
        return

    def wrap(original: Callable[..., None], level: int, console: tuple[str, ...]) -> Any:
        def log(message: str, **params: Any) -> None:
            if util._console_log_level() in console or util.logger.isEnabledFor(level):
                original(message, **params)

        log._lazy = True  # type: ignore[attr-defined]
        return log

    requestor_mod.log_debug = wrap(util.log_debug, logging.DEBUG, ("debug",))  # type: ignore[attr-defined]
    requestor_mod.log_info = wrap(util.log_info, logging.INFO, ("debug", "info"))  # type: ignore[attr-defined]


class StripeGateway:
    """Paced, retrying access to one Stripe account with one key.

    Retries 429 (plain and lock_timeout), 5xx, 409 and connection errors with exponential backoff
    and jitter, honouring Retry-After; a 401/403 fails at once with a message naming the key.
    """

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        api_version: str = STRIPE_API_VERSION,
        stripe_account: str | None = None,
        rate_limit_rps: float = 90.0,
        rate_limit_burst: float | None = None,
        backoff: BackoffPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        workspace_id: str = "",
        timeout_seconds: float | None = None,
        pacing_file: str | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"stripe_version": api_version, "max_network_retries": 0}
        if timeout_seconds is not None:
            # A hung connection costs this long, then retries as a dropped one.
            kwargs["http_client"] = stripe.new_default_http_client(timeout=timeout_seconds)
        if api_base:
            kwargs["base_addresses"] = {"api": api_base}
        if stripe_account:
            kwargs["stripe_account"] = stripe_account
        self._client = stripe.StripeClient(api_key, **kwargs)
        _lazy_sdk_logging()
        # The client's own requestor: the same auth, version, encoding and error mapping as
        # raw_request, minus its OrderedDict decoding of every page (twice the cost of a dict).
        requestor = getattr(self._client, "_requestor", None)
        self._requestor = (
            requestor
            if callable(getattr(requestor, "request_raw", None))
            and callable(getattr(requestor, "_interpret_response", None))
            else None
        )
        self._key_hint = mask_key(api_key)
        # Default burst: 50 ms worth of requests (5 at 100 req/s). Below a server's own burst
        # (Stripe-like limiters allow ~100 ms), it leaves that much arrival jitter before a 429,
        # yet lets requests saved up during a CPU-bound stretch go out together afterwards.
        burst = max(1.0, rate_limit_rps / 20) if rate_limit_burst is None else rate_limit_burst
        # A starved process's missed slots never go out as one burst the server would answer
        # with 429s (see LIMITER_MAX_LATE_SECONDS).
        self._limiter = TokenBucket(
            rate_limit_rps,
            burst=burst,
            sleep=sleep,
            max_late=LIMITER_MAX_LATE_SECONDS,
            state_file=pacing_file,
        )
        # What another process needs to open the same gateway (see `process_spec`).
        self._spec: dict[str, Any] | None = (
            {
                "api_key": api_key,
                "api_base": api_base,
                "api_version": api_version,
                "stripe_account": stripe_account,
                "rate_limit_rps": rate_limit_rps,
                "rate_limit_burst": burst,
                "backoff": backoff,
                "workspace_id": workspace_id,
                "pacing_file": pacing_file,
            }
            if sleep is time.sleep and type(self) is StripeGateway
            else None
        )
        self._backoff = backoff or BackoffPolicy()
        self._sleep = sleep
        self.workspace_id = workspace_id
        self.stats = GatewayStats()
        # Prefetching threads share this gateway; counters are updated under the lock.
        self._stats_lock = threading.Lock()

    def process_spec(self, pacing_file: str) -> dict[str, Any] | None:
        """Keyword arguments that open this gateway in another process, both pacing through
        one file: this gateway's own `pacing_file` if it has one, else `pacing_file` (this
        gateway switches to it now). None when this gateway cannot be re-created elsewhere (a
        subclass, or a test's sleep)."""
        if self._spec is None:
            return None
        if self._spec.get("pacing_file") is None:
            old = self._limiter
            self._limiter = TokenBucket(
                old.rate,
                burst=old.burst,
                max_late=LIMITER_MAX_LATE_SECONDS,
                state_file=pacing_file,
            )
            old.close()
        return {**self._spec, "pacing_file": str(self._limiter.state_file)}

    def add_stats(self, other: GatewayStats) -> None:
        """Count another process's requests for this gateway's account as this gateway's."""
        with self._stats_lock:
            self.stats.add(other)

    def close(self) -> None:
        """Release the pacing file, if any."""
        self._limiter.close()

    @property
    def key_hint(self) -> str:
        """The masked key, safe for logs and messages."""
        return self._key_hint

    def _call(self, resource: str, fn: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            attempt += 1
            # The stream's weighted share of the rate (engine `_tag_flow`); none: first come.
            waited = self._limiter.acquire(
                flow=getattr(request_tag, "flow", None),
                weight=getattr(request_tag, "weight", 1.0),
            )
            tag = getattr(request_tag, "name", "")
            sent = time.time()
            with self._stats_lock:
                self.stats.throttled_seconds += waited
                self.stats.requests += 1
                counters = self.stats.by_tag.setdefault(tag, {})
                counters["requests"] = counters.get("requests", 0.0) + 1
                counters["limiter_s"] = counters.get("limiter_s", 0.0) + waited
                line = self.stats.timeline.setdefault(tag, {})
                line[int(sent)] = line.get(int(sent), 0) + 1
            try:
                try:
                    return fn()
                finally:
                    self._count_http(tag, sent)
            except stripe.PermissionError as exc:
                self._count(exc)
                raise StripePermissionDenied(
                    f"workspace {self.workspace_id}: Stripe key {self._key_hint} may not read "
                    f"{resource} (HTTP 403). Grant the restricted key read access to {resource} "
                    f"in the Stripe dashboard, or connect a key that has it. Stripe said: "
                    f"{exc.user_message or exc}"
                ) from exc
            except stripe.AuthenticationError as exc:
                self._count(exc)
                raise StripeAuthFailed(
                    f"workspace {self.workspace_id}: Stripe rejected key {self._key_hint} "
                    f"(HTTP 401); reconnect the workspace with a valid key."
                ) from exc
            except stripe.StripeError as exc:
                self._count(exc)
                if not self._retryable(exc) or attempt >= self._backoff.max_attempts:
                    raise
                headers = exc.headers or {}
                retry_after = parse_retry_after(headers.get("Retry-After"))
                delay = self._backoff.delay(attempt, retry_after)
                if exc.http_status == 429 and exc.code != "lock_timeout":
                    # Over the account's rate: every thread waits, not just the one told so.
                    self._limiter.hold(delay)
                with self._stats_lock:
                    self.stats.retries += 1
                self._sleep(delay)

    def _count_http(self, tag: str, sent: float) -> None:
        # Seconds from sending a request to its decoded answer (GIL waits included).
        took = time.time() - sent
        with self._stats_lock:
            counters = self.stats.by_tag.setdefault(tag, {})
            counters["http_s"] = counters.get("http_s", 0.0) + took

    def _count(self, exc: stripe.StripeError) -> None:
        key = str(exc.http_status or type(exc).__name__)
        with self._stats_lock:
            self.stats.errors_by_status[key] = self.stats.errors_by_status.get(key, 0) + 1

    @staticmethod
    def _retryable(exc: stripe.StripeError) -> bool:
        if isinstance(exc, stripe.APIConnectionError):
            return True
        headers = exc.headers or {}
        if str(headers.get("Stripe-Should-Retry", "")).lower() == "true":
            return True
        status = exc.http_status or 0
        return status in (409, 429) or status >= 500

    def _get(self, resource: str, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        # raw_request keeps the SDK's auth, API version, bracket encoding and error mapping but
        # skips StripeObject construction, which measured at ~65 % of sync time (bench/README.md).
        if self._requestor is None:
            resp = self._call(
                resource, lambda: self._client.raw_request("get", path, **dict(params))
            )
            return resp.data
        return self._call(resource, lambda: self._request_json(path, params))

    def _request_json(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """What raw_request does, decoding a successful body into plain dicts."""
        requestor = self._requestor
        options, rest = extract_options_from_dict(params)
        body, code, headers = requestor.request_raw(
            "get",
            path,
            params=rest,
            options=options,
            base_address="api",
            api_mode="V1",
            usage=["raw_request"],
        )
        if 200 <= code < 300:
            try:
                return json.loads(body)
            except ValueError:
                pass  # the SDK raises its own "Invalid response body" error below
        return requestor._interpret_response(body, code, headers, "V1").data

    def list_page(
        self, resource: str, params: Mapping[str, Any], parent: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of a list endpoint: (objects as plain dicts, has_more)."""
        path = RESOURCES[resource][0].format(parent=parent)
        page = self._get(resource, path, params)
        return list(page.get("data") or []), bool(page.get("has_more"))

    def retrieve(
        self, resource: str, object_id: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """One object by id (with `params` such as expansions), or None when it no longer exists."""
        try:
            return self._get(resource, RESOURCES[resource][1].format(id=object_id), params or {})
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise

    def account(self) -> dict[str, Any]:
        """The account the key belongs to (validates a key before it is stored)."""
        return self._get("account", RESOURCES["account"][1], {})
