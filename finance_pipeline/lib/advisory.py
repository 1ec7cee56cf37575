"""Advisory memo grounded only in computed metrics and alerts (v1 API advisory response).

A MemoProvider turns the grounding JSON into {summary, suggestions, risks}. The OpenAI-compatible
HTTP provider (`finance_pipeline.advisory.provider`) posts to `{base_url}/chat/completions`; any failure (not configured, timeout, HTTP
error, unparsable answer) falls back to the deterministic rule-based writer, with
provider="fallback", ai_available=false and an ai_error {type, code, message}. The rule-based writer
only restates and compares the numbers it is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from finance_pipeline.lib.money import round_half_away

SYSTEM_PROMPT = (
    "You are a careful CFO assistant. The user message is a JSON object with a company's computed "
    "metrics (money in cents) and active alerts. Use only numbers that appear in it; do not invent "
    "figures. Answer with one JSON object and nothing else: "
    '{"summary": string, "suggestions": [string], "risks": [string]}.'
)


@dataclass(frozen=True, slots=True)
class MemoDraft:
    """The written part of a memo."""

    summary: str
    suggestions: list[str]
    risks: list[str]


class MemoProviderError(Exception):
    """A provider failure, reported as the memo's ai_error {type, code, message}."""

    def __init__(self, type_: str, code: str, message: str) -> None:
        super().__init__(message)
        self.type = type_
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The v1 API ai_error object."""
        return {"type": self.type, "code": self.code, "message": self.message}


class MemoProvider(Protocol):
    """Something that writes a memo from the grounding JSON, or raises MemoProviderError."""

    name: str
    model: str | None

    def write(self, grounding: Mapping[str, Any]) -> MemoDraft:
        """Write summary, suggestions and risks from the grounding only."""
        ...


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal | Fraction):
        return float(value)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def to_jsonable(value: Any) -> Any:
    """Plain JSON types (Decimal -> float, date -> ISO, Alert -> dict) for prompts and responses."""
    return json.loads(json.dumps(value, default=_json_default))


def parse_memo_answer(text: str) -> MemoDraft:
    """Parse a model answer: one JSON object (optionally fenced) with summary/suggestions/risks."""
    cleaned = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if start < 0 or end < start:
        raise MemoProviderError(
            "upstream_error", "ai_invalid_response", "The answer has no JSON object."
        )
    try:
        data = json.loads(cleaned[start : end + 1])
    except json.JSONDecodeError as exc:
        raise MemoProviderError(
            "upstream_error", "ai_invalid_response", f"The answer is not valid JSON: {exc.msg}."
        ) from exc
    summary = data.get("summary") if isinstance(data, dict) else None
    suggestions = data.get("suggestions", []) if isinstance(data, dict) else None
    risks = data.get("risks", []) if isinstance(data, dict) else None
    if (
        not isinstance(summary, str)
        or not summary.strip()
        or not isinstance(suggestions, list)
        or not isinstance(risks, list)
        or not all(isinstance(s, str) for s in [*suggestions, *risks])
    ):
        raise MemoProviderError(
            "upstream_error",
            "ai_invalid_response",
            "The answer must have a non-empty summary and string lists suggestions and risks.",
        )
    return MemoDraft(summary.strip(), [s.strip() for s in suggestions], [r.strip() for r in risks])


@dataclass(frozen=True, slots=True)
class NotCalledProvider:
    """Stands in for the AI on days it is deliberately not asked (the older days of a backfill).

    write_memo then records the rule-based memo with ai_error {type "skipped", code, reason}.
    """

    reason: str
    code: str = "ai_not_called"
    name: str = "not_called"
    model: str | None = None

    def write(self, grounding: Mapping[str, Any]) -> MemoDraft:
        """Never calls anything: the caller chose the rule-based writer for this memo."""
        raise MemoProviderError("skipped", self.code, self.reason)


# --- rule-based writer ---------------------------------------------------------------------------


def format_cents(cents: int, currency: str = "USD") -> str:
    """Cents as a readable amount: "$23,200.00" for USD, "23,200.00 EUR" otherwise."""
    sign = "-" if cents < 0 else ""
    text = f"{abs(cents) // 100:,}.{abs(cents) % 100:02d}"
    return f"{sign}${text}" if currency.upper() == "USD" else f"{sign}{text} {currency.upper()}"


def _num(value: Any) -> str:
    """A months/percent figure with 2 decimals, rounded half away from zero (docs/metrics.md §2)."""
    return format(Decimal(round_half_away(Decimal(str(value)) * 100)).scaleb(-2), "f")


def rule_based_memo(metrics: Mapping[str, Any], alerts: Iterable[Mapping[str, Any]]) -> MemoDraft:
    """A deterministic memo citing only the given numbers (the fallback writer)."""
    cur = str(metrics.get("currency") or "USD")
    money = lambda key: format_cents(int(metrics.get(key) or 0), cur)  # noqa: E731
    runway = metrics.get("runway_months")
    cash = metrics.get("cash_on_hand_cents")
    rec_burn = int(metrics.get("recurring_burn_cents_30d") or 0)
    gross = int(metrics.get("gross_revenue_cents_30d") or 0)
    refunds = int(metrics.get("refunds_cents_30d") or 0)
    one_time = int(metrics.get("one_time_expenses_cents_30d") or 0)
    alerts = list(alerts)

    parts = []
    if runway is not None:
        parts.append(
            f"Runway is {_num(runway)} months at a recurring burn of "
            f"{money('recurring_burn_cents_30d')} per 30 days."
        )
    elif cash is None:
        parts.append("Cash on hand is not set, so runway cannot be computed.")
    else:
        parts.append(
            "Net revenue covers recurring expenses (recurring burn "
            f"{money('recurring_burn_cents_30d')} over 30 days), so runway is not limited by burn."
        )
    parts.append(
        f"Net revenue over the last 30 days was {money('net_revenue_cents_30d')} "
        f"(gross {money('gross_revenue_cents_30d')}, refunds {money('refunds_cents_30d')})."
    )
    parts.append(f"MRR is {money('mrr_cents')} (ARR {money('arr_cents')}).")
    parts.append(f"{len(alerts)} active alert{'s' if len(alerts) != 1 else ''}.")

    suggestions: list[str] = []
    if cash is None:
        suggestions.append(
            "Set cash on hand on the workspace so runway and forecasts can be computed."
        )
    elif runway is not None and Decimal(str(runway)) < 6:
        suggestions.append(
            f"Runway is {_num(runway)} months: reduce recurring expenses (recurring burn "
            f"{money('recurring_burn_cents_30d')} per 30 days) or raise cash."
        )
    if one_time > 0:
        suggestions.append(
            f"One-time expenses were {money('one_time_expenses_cents_30d')} in the last 30 days; "
            "they count in burn but not in runway."
        )
    if gross > 0 and -refunds * 20 > gross:  # refunds above 5 % of gross revenue
        share = round_half_away(Fraction(-refunds * 10_000, gross))
        suggestions.append(
            f"Refunds are {Decimal(share).scaleb(-2)}% of gross revenue "
            f"({money('refunds_cents_30d')}); review their causes."
        )
    skipped = metrics.get("skipped_currencies") or {}
    if skipped:
        listed = ", ".join(f"{c.upper()} ({n})" for c, n in sorted(skipped.items()))
        suggestions.append(f"Add FX rates: entries were left out of the totals for {listed}.")

    risks = [str(a.get("message")) for a in alerts if a.get("message")]
    if rec_burn > 0 and runway is None and cash is not None:
        risks.append(f"Recurring burn is {money('recurring_burn_cents_30d')} per 30 days.")
    return MemoDraft(" ".join(parts), suggestions, risks)


def write_memo(
    workspace: Mapping[str, Any],
    as_of: date,
    metrics: Mapping[str, Any],
    alerts: Iterable[Any],
    provider: MemoProvider | None,
) -> dict[str, Any]:
    """The v1 API advisory response for a workspace {id, name}; never raises on AI failure."""
    alert_dicts = [to_jsonable(a) for a in alerts]
    grounding = {
        "workspace_name": workspace.get("name"),
        "alert_count": len(alert_dicts),
        "alerts": alert_dicts,
        "metrics": to_jsonable(dict(metrics)),
    }
    error: MemoProviderError | None = None
    draft: MemoDraft | None = None
    if provider is None:
        error = MemoProviderError(
            "configuration_error", "ai_not_configured", "No AI provider is configured."
        )
    else:
        try:
            draft = provider.write(grounding)
        except MemoProviderError as exc:
            error = exc
        except Exception as exc:  # a provider bug must not break the memo endpoint
            error = MemoProviderError("upstream_error", "ai_error", f"{type(exc).__name__}: {exc}")
    base = {"workspace_id": workspace.get("id"), "as_of": as_of.isoformat()}
    if draft is not None and provider is not None:
        return {
            **base,
            "summary": draft.summary,
            "suggestions": draft.suggestions,
            "risks": draft.risks,
            "grounding": grounding,
            "provider": provider.name,
            "model": provider.model,
            "ai_available": True,
            "ai_error": None,
        }
    fallback = rule_based_memo(grounding["metrics"], alert_dicts)
    return {
        **base,
        "summary": fallback.summary,
        "suggestions": fallback.suggestions,
        "risks": fallback.risks,
        "grounding": grounding,
        "provider": "fallback",
        "model": None,
        "ai_available": False,
        "ai_error": error.to_dict() if error else None,
    }
