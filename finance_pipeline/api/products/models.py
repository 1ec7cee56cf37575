"""Request and response bodies of the 001 products API: revenue and cost records of a product (a
workspace), amounts as exact decimal numbers in whole units of the record's currency."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)

from finance_pipeline.api.exact import ExactNumber
from finance_pipeline.lib.ingest_validation import COST_CATEGORIES, REVENUE_TYPES
from finance_pipeline.lib.ingest_validation.records import (
    MAX_ID_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_TEXT_LENGTH,
)
from finance_pipeline.lib.money import micros_to_decimal, minor_unit_exponent
from finance_pipeline.lib.timeutil import iso_utc


def _json_number(value: object) -> object:
    """Amounts are JSON numbers: `99.00` or `99`, never `"99"` or `true` (the lib then checks
    sign, size and the currency's minor unit)."""
    if isinstance(value, bool | str):
        raise ValueError("must be a number")
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_json_number),
    WithJsonSchema(
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 10**12,
            "description": "Whole units of the currency, no finer than its minor unit",
            "examples": [99.00],
        }
    ),
]
# YYYY-MM-DD in 2000-2100 (the ingest rules; the lib also refuses days like 2024-02-30).
Day = Annotated[
    str,
    StringConstraints(pattern=r"^(20\d\d|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"),
    Field(examples=["2024-01-15"], json_schema_extra={"format": "date"}),
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$"), Field(examples=["USD"])]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
Note = Annotated[str, StringConstraints(max_length=MAX_NOTE_LENGTH)]
RecordId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^ \t\r\n]"),
    Field(
        description="Your own id for the record (optional): sending it again returns the stored "
        "record instead of creating a second one. Without it, the id is derived from the content."
    ),
]
RevenueType = Literal[REVENUE_TYPES]  # type: ignore[valid-type]
CostCategory = Literal[COST_CATEGORIES]  # type: ignore[valid-type]


class _Request(BaseModel):
    """Request bodies reject fields they do not know (a typo is a 422, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class RevenueCreate(_Request):
    """A revenue record to create; `amount` is positive (type refund is stored negative)."""

    id: RecordId | None = None
    amount: Amount
    currency: Currency | None = None
    type: RevenueType
    source: Text | None = None
    note: Note | None = None
    date: Day


class CostCreate(_Request):
    """A cost record to create."""

    id: RecordId | None = None
    name: Text
    amount: Amount
    currency: Currency | None = None
    category: CostCategory
    isRecurring: StrictBool | None = None
    note: Note | None = None
    date: Day


def _amount(micros: int, currency: str) -> Decimal:
    """Stored micro-units as the seed's decimal amount in the currency's minor-unit places (exact:
    ingest refuses amounts finer than the minor unit)."""
    return micros_to_decimal(abs(micros), minor_unit_exponent(currency))


def _instant(ts: int) -> str:
    """The seed's `createdAt`: ISO 8601 in UTC with `Z`."""
    return iso_utc(ts).replace("+00:00", "Z")


class Revenue(BaseModel):
    """One revenue record (raw.manual_revenue): `amount` in whole units of `currency`, positive
    for every type (a refund is the money returned; it lowers revenue, docs/metrics.md §7)."""

    id: str = Field(examples=["clxabc123"])
    amount: ExactNumber = Field(examples=[99.00])
    currency: str = Field(examples=["USD"])
    type: str = Field(examples=["subscription"])
    source: str | None = Field(examples=["stripe"])
    note: str | None = Field(examples=[None])
    date: str = Field(examples=["2024-01-15"])
    createdAt: str = Field(examples=["2024-01-15T10:30:00Z"])

    @classmethod
    def of(cls, r: dict[str, Any]) -> Revenue:
        """From a raw.manual_revenue row."""
        return cls(
            id=r["external_id"],
            amount=_amount(r["amount_micros"], r["currency"]),
            currency=r["currency"].upper(),
            type=r["type"],
            source=r["source"],
            note=r["note"],
            date=str(r["date"])[:10],
            createdAt=_instant(r["ingested_at"]),
        )


class Cost(BaseModel):
    """One cost record (raw.cost_records): `amount` in whole units of `currency`."""

    id: str = Field(examples=["clxdef456"])
    name: str = Field(examples=["Vercel Pro"])
    amount: ExactNumber = Field(examples=[20.00])
    currency: str = Field(examples=["USD"])
    category: str = Field(examples=["INFRASTRUCTURE"])
    isRecurring: bool = Field(examples=[True])
    note: str | None = Field(examples=[None])
    date: str = Field(examples=["2024-01-15"])
    createdAt: str = Field(examples=["2024-01-15T10:30:00Z"])

    @classmethod
    def of(cls, r: dict[str, Any]) -> Cost:
        """From a raw.cost_records row."""
        return cls(
            id=r["external_id"],
            name=r["name"],
            amount=_amount(r["amount_micros"], r["currency"]),
            currency=r["currency"].upper(),
            category=r["category"],
            isRecurring=bool(r["is_recurring"]),
            note=r["note"],
            date=str(r["date"])[:10],
            createdAt=_instant(r["ingested_at"]),
        )


class RevenueOne(BaseModel):
    """`{"data": revenue}`."""

    data: Revenue


class CostOne(BaseModel):
    """`{"data": cost}`."""

    data: Cost


class RevenueList(BaseModel):
    """`{"data": [revenue...], "has_more": bool}`, ordered by id."""

    data: list[Revenue]
    has_more: bool


class CostList(BaseModel):
    """`{"data": [cost...], "has_more": bool}`, ordered by id."""

    data: list[Cost]
    has_more: bool
