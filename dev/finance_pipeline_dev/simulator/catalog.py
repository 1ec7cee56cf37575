"""The simulator's catalogue: products, prices, coupons and tax rates of one Stripe account.

Every price is built twice from the same numbers: a Stripe ``price`` dict (what the API shows) and a
``PriceModel`` (what the ground truth reads). Amounts are chosen so that percent coupons and the 20 %
inclusive tax divide them exactly (multiples of 100 minor units; inclusive prices multiples of 600),
which keeps invoice lines and exact MRR comparable without rounding noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from finance_pipeline.lib.money import round_half_away
from finance_pipeline_dev.standin import shapes

from .model import CouponModel, PriceModel, Tier

#: Approximate value of one US cent in each currency's minor unit (for "nice" local price points).
CENT_FACTOR = {
    "usd": Decimal(1),
    "eur": Decimal("0.9"),
    "gbp": Decimal("0.8"),
    "jpy": Decimal("1.5"),
}
#: Stripe-like processing fees per currency: (basis points, fixed minor units).
FEES = {"usd": (290, 30), "eur": (150, 25), "gbp": (150, 20), "jpy": (360, 0)}
METERED_UNIT = {"usd": "0.5", "eur": "0.45", "gbp": "0.4", "jpy": "0.8"}


def local_amount(usd_cents: int, currency: str) -> int:
    """A local price point: the USD amount converted and rounded to a multiple of 100 minor units."""
    factor = CENT_FACTOR.get(currency, Decimal(1))
    hundreds = round_half_away(Decimal(usd_cents) * factor / 100)
    return max(1, hundreds) * 100


@dataclass
class PriceEntry:
    """A catalogue price: the Stripe dict, the ground-truth model and what the generator needs."""

    stripe: dict[str, Any]
    model: PriceModel
    family: str
    product_name: str
    rank: int
    kind: str  # flat | seat | graduated | volume | pack | weekly | inclusive | metered | addon | module


@dataclass
class CouponEntry:
    """A coupon: the Stripe dict and the ground-truth model."""

    stripe: dict[str, Any]
    model: CouponModel


@dataclass
class Catalog:
    """Everything sellable in one account, indexed for the generator."""

    products: list[dict[str, Any]] = field(default_factory=list)
    prices: list[PriceEntry] = field(default_factory=list)
    coupons: list[CouponEntry] = field(default_factory=list)
    tax_rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_key: dict[tuple[str, str, str], PriceEntry] = field(default_factory=dict)

    def price(self, family: str, interval_key: str, currency: str) -> PriceEntry | None:
        """The price of a family for an interval key (month, quarter, year, week) and currency."""
        return self.by_key.get((family, interval_key, currency))


# family: (product name, kind, rank, {interval_key: spec})
_INTERVALS = {
    "month": ("month", 1),
    "quarter": ("month", 3),
    "year": ("year", 1),
    "week": ("week", 1),
}
PLAN_FAMILIES: dict[str, tuple[str, str, int, dict[str, Any]]] = {
    "starter": ("Starter", "flat", 1, {"month": 1900, "year": 19000}),
    "pro": ("Pro", "seat", 2, {"month": 4900, "quarter": 13900, "year": 49000}),
    "teampack": ("Team Pack", "pack", 2, {"month": 9900, "year": 99000}),
    "business": (
        "Business",
        "graduated",
        3,
        {
            "month": [(10, 3900, 0), (50, 2900, 0), (None, 1900, 0)],
            "year": [(10, 39000, 0), (50, 29000, 0), (None, 19000, 0)],
        },
    ),
    "enterprise": (
        "Enterprise",
        "volume",
        4,
        {
            "month": [(20, 5900, 0), (100, 4900, 0), (None, 3900, 50000)],
            "year": [(20, 59000, 0), (100, 49000, 0), (None, 39000, 500000)],
        },
    ),
    "sprint": ("Sprint", "weekly", 1, {"week": 1500}),
}
#: Tax-inclusive consumer plan (only where VAT-inclusive pricing is usual); fixed local amounts.
PERSONAL = {"eur": {"month": 1200, "year": 12000}, "gbp": {"month": 1200, "year": 12000}}
ADDONS = {
    "support": ("Priority Support", 9900),
    "sso": ("SSO", 4900),
    "audit": ("Audit Log", 2900),
    "storage": ("Extra Storage", 1000),
}
MODULES = [
    ("analytics", "Analytics", 2000),
    ("reports", "Reports", 2500),
    ("workflows", "Workflows", 3000),
    ("api_access", "API Access", 3500),
    ("sandbox", "Sandbox", 2000),
    ("compliance", "Compliance Pack", 4000),
    ("data_export", "Data Export", 2500),
    ("integrations", "Integrations", 3000),
    ("ai_assist", "AI Assist", 6000),
    ("branding", "Custom Branding", 2000),
    ("archive", "Long-term Archive", 1500),
    ("sla", "Premium SLA", 5000),
    ("training", "Training Seats", 1500),
]
# id, percent_off, amount_off (usd cents), duration, duration_in_months
COUPON_SPECS: list[tuple[str, int | None, int | None, str, int | None]] = [
    ("WELCOME20", 20, None, "once", None),
    ("LAUNCH25", 25, None, "repeating", 3),
    ("SPRING15", 15, None, "repeating", 6),
    ("NONPROFIT50", 50, None, "forever", None),
    ("ANNUAL10", 10, None, "forever", None),
    ("SAVE10", None, 1000, "forever", None),
    ("FIRSTOFF", None, 500, "once", None),
    ("LOYAL", None, 1500, "repeating", 12),
]
TAX_SPECS = {
    # currency: (display name, percentage, country, jurisdiction, tax_type, inclusive)
    "usd": ("Sales Tax", "8.875", "US", "NY", "sales_tax", False),
    "eur": ("VAT", "19", "DE", "DE", "vat", False),
    "gbp": ("VAT", "20", "GB", "GB", "vat", False),
    "jpy": ("JCT", "10", "JP", "JP", "jct", False),
}
INCLUSIVE_TAX = {
    "eur": ("VAT", "20", "FR", "FR", "vat", True),
    "gbp": ("VAT", "20", "GB", "GB", "vat", True),
}


def make_tax_rate(
    id: str, created: int, spec: tuple[str, str, str, str, str, bool]
) -> dict[str, Any]:
    """A Stripe ``tax_rate`` (embedded in subscriptions; lines reference it by id)."""
    name, pct, country, juris, tax_type, inclusive = spec
    return {
        "id": id,
        "object": "tax_rate",
        "active": True,
        "country": country,
        "created": created,
        "description": f"{name} {juris} {pct}%",
        "display_name": name,
        "effective_percentage": float(pct),
        "flat_amount": None,
        "inclusive": inclusive,
        "jurisdiction": juris,
        "jurisdiction_level": "state" if country == "US" else "country",
        "livemode": False,
        "metadata": {},
        "percentage": float(pct),
        "rate_type": "percentage",
        "state": juris if country == "US" else None,
        "tax_type": tax_type,
    }


def build_catalog(new_id: Any, created: int, currencies: tuple[str, ...]) -> Catalog:
    """Products, prices (every family x interval x currency), coupons and tax rates of an account."""
    cat = Catalog()
    products: dict[str, dict[str, Any]] = {}

    def product(key: str, name: str, unit_label: str | None = None) -> dict[str, Any]:
        """The product of a family, created once per account."""
        if key not in products:
            p = shapes.make_product(
                new_id("prod"), created=created, name=name, unit_label=unit_label
            )
            products[key] = p
            cat.products.append(p)
        return products[key]

    def add(
        family: str,
        interval_key: str,
        currency: str,
        kind: str,
        rank: int,
        prod: dict[str, Any],
        *,
        unit: str | None = None,
        tiers: list[tuple[int | None, int, int]] | None = None,
        tiers_mode: str | None = None,
        divide_by: int | None = None,
        usage_type: str = "licensed",
        tax_behavior: str = "exclusive",
        inclusive_pct: Decimal | None = None,
    ) -> None:
        """Register one price of a family, as a Stripe dict and a ground-truth model."""
        interval, count = _INTERVALS[interval_key]
        pid = new_id("price")
        nickname = f"{prod['name']} {interval_key}ly".replace("dayly", "daily")
        lookup = f"{family}_{interval_key}_{currency}"
        overrides: dict[str, Any] = {
            "tax_behavior": tax_behavior,
            "recurring": {
                "interval": interval,
                "interval_count": count,
                "meter": None,
                "trial_period_days": None,
                "usage_type": usage_type,
            },
        }
        if tiers is not None:
            overrides.update(
                billing_scheme="tiered",
                tiers_mode=tiers_mode,
                tiers=[
                    {
                        "flat_amount": flat,
                        "flat_amount_decimal": str(flat),
                        "unit_amount": amt,
                        "unit_amount_decimal": str(amt),
                        "up_to": up,
                    }
                    for up, amt, flat in tiers
                ],
            )
        if divide_by is not None:
            overrides["transform_quantity"] = {"divide_by": divide_by, "round": "up"}
        unit_int = (
            int(Decimal(unit)) if unit is not None and Decimal(unit) == int(Decimal(unit)) else None
        )
        price = shapes.make_price(
            pid,
            product=prod["id"],
            unit_amount=unit_int if unit_int is not None else 0,
            created=created,
            currency=currency,
            interval=interval,
            interval_count=count,
            nickname=nickname,
            lookup_key=lookup,
            **overrides,
        )
        price["unit_amount"] = unit_int
        price["unit_amount_decimal"] = unit
        model = PriceModel(
            id=pid,
            currency=currency,
            interval=interval,
            interval_count=count,
            usage_type=usage_type,
            billing_scheme="tiered" if tiers is not None else "per_unit",
            unit_amount_decimal=Decimal(unit) if unit is not None else None,
            tiers_mode=tiers_mode,
            tiers=tuple(Tier(up, Decimal(amt), Decimal(flat)) for up, amt, flat in (tiers or [])),
            transform_divide_by=divide_by,
            transform_round="up",
            tax_behavior=tax_behavior,
            inclusive_tax_percent=inclusive_pct,
            product_id=prod["id"],
            nickname=nickname,
        )
        entry = PriceEntry(price, model, family, prod["name"], rank, kind)
        cat.prices.append(entry)
        cat.by_key[(family, interval_key, currency)] = entry

    for cur in currencies:
        for family, (name, kind, rank, specs) in PLAN_FAMILIES.items():
            prod = product(
                family, name, "seat" if kind in ("seat", "graduated", "volume") else None
            )
            for ikey, spec in specs.items():
                if kind in ("graduated", "volume"):
                    tiers = [
                        (up, local_amount(amt, cur), local_amount(flat, cur) if flat else 0)
                        for up, amt, flat in spec
                    ]
                    add(family, ikey, cur, kind, rank, prod, tiers=tiers, tiers_mode=kind)
                elif kind == "pack":
                    add(
                        family,
                        ikey,
                        cur,
                        kind,
                        rank,
                        prod,
                        unit=str(local_amount(spec, cur)),
                        divide_by=5,
                    )
                else:
                    add(family, ikey, cur, kind, rank, prod, unit=str(local_amount(spec, cur)))
        if cur in PERSONAL:
            prod = product("personal", "Personal")
            pct = Decimal(INCLUSIVE_TAX[cur][1])
            for ikey, amt in PERSONAL[cur].items():
                add(
                    "personal",
                    ikey,
                    cur,
                    "inclusive",
                    1,
                    prod,
                    unit=str(amt),
                    tax_behavior="inclusive",
                    inclusive_pct=pct,
                )
        prod = product("api", "API Calls", "call")
        add(
            "api",
            "month",
            cur,
            "metered",
            0,
            prod,
            unit=METERED_UNIT.get(cur, "0.5"),
            usage_type="metered",
        )
        for key, (name, amt) in ADDONS.items():
            prod = product(f"addon_{key}", name)
            add(f"addon_{key}", "month", cur, "addon", 0, prod, unit=str(local_amount(amt, cur)))
            add(
                f"addon_{key}", "year", cur, "addon", 0, prod, unit=str(local_amount(amt * 10, cur))
            )
        for key, name, amt in MODULES:
            prod = product(f"module_{key}", f"Module: {name}")
            add(f"module_{key}", "month", cur, "module", 0, prod, unit=str(local_amount(amt, cur)))
            add(
                f"module_{key}",
                "year",
                cur,
                "module",
                0,
                prod,
                unit=str(local_amount(amt * 10, cur)),
            )

    for p in cat.products:
        for e in cat.prices:
            if e.stripe["product"] == p["id"]:
                p["default_price"] = e.stripe["id"]
                break

    for cid, pct, off, duration, months in COUPON_SPECS:
        if pct is not None:
            stripe = shapes.make_coupon(
                cid,
                created=created,
                percent_off=float(pct),
                duration=duration,
                duration_in_months=months,
                name=cid.title(),
            )
            cat.coupons.append(
                CouponEntry(
                    stripe,
                    CouponModel(cid, duration, percent_off=Decimal(pct), duration_in_months=months),
                )
            )
            continue
        for cur in currencies:
            amount = local_amount(off or 0, cur)
            ccid = f"{cid}_{cur.upper()}"
            stripe = shapes.make_coupon(
                ccid,
                created=created,
                amount_off=amount,
                currency=cur,
                duration=duration,
                duration_in_months=months,
                name=f"{cid.title()} ({cur.upper()})",
            )
            cat.coupons.append(
                CouponEntry(
                    stripe,
                    CouponModel(
                        ccid, duration, amount_off=amount, currency=cur, duration_in_months=months
                    ),
                )
            )

    for cur in currencies:
        spec = TAX_SPECS.get(cur)
        if spec is not None:
            cat.tax_rates[cur] = make_tax_rate(new_id("txr"), created, spec)
        ispec = INCLUSIVE_TAX.get(cur)
        if ispec is not None:
            cat.tax_rates[f"{cur}_inclusive"] = make_tax_rate(new_id("txr"), created, ispec)
    return cat
