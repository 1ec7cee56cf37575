"""The Stripe API version the pipeline is written against, defined once for product and stand-in.

Object shapes (billing periods on subscription items, `invoice.parent`, invoice payments) are those
of this version; changing it means re-checking the extractors and the stand-in's shapes.
"""

from __future__ import annotations

STRIPE_API_VERSION = "2026-10-28.endive"
