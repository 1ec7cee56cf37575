"""Auto-matching Stripe customers to cost tags (docs/metrics.md §11): signals, confidence, ambiguity,
decisions that are never overridden, deterministic ids."""

from __future__ import annotations

import itertools
import uuid

import pytest

from finance_pipeline.lib.margins import (
    MATCH_CONFIDENCE,
    CustomerMapping,
    StripeCustomer,
    match_signal,
    normalize_name,
    proposal_id,
    propose_auto_matches,
)

ACME = StripeCustomer("cus_acme", "Acme Corp", "Billing@Acme.com", metadata={"customer": "acme-42"})


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("cus_acme", (1.0, "exact_id")),
        ("acme-42", (0.95, "metadata")),
        ("billing@acme.com", (0.9, "email")),
        (" BILLING@acme.COM ", (0.9, "email")),
        ("acme-corp", (0.8, "name")),
        ("ACME_CORP", (0.8, "name")),
        ("Acme Corp.", (0.8, "name")),
        ("acme.com", (0.7, "email_domain")),
        ("acme", (0.7, "email_domain")),
        ("CUS_ACME", None),  # Stripe ids are case-sensitive
        ("acme-co", None),
        ("", None),
        ("   ", None),
    ],
)
def test_match_signal_each_signal(tag: str, expected: tuple[float, str] | None) -> None:
    assert match_signal(ACME, tag) == expected


def test_match_signal_domains_and_metadata_key() -> None:
    sub = StripeCustomer("cus_s", "Something Else", "ap@mail.initech.co.uk")
    assert match_signal(sub, "initech") == (0.7, "email_domain")
    assert match_signal(sub, "mail.initech.co.uk") == (0.7, "email_domain")
    assert match_signal(sub, "mail") is None  # mail-host prefix, not the company
    assert match_signal(sub, "co") is None
    # A free-mail domain says nothing about the company.
    solo = StripeCustomer("cus_g", "Solo Dev", "solo@gmail.com")
    assert match_signal(solo, "gmail") is None
    assert match_signal(solo, "gmail.com") is None
    assert match_signal(solo, "solo-dev") == (0.8, "name")
    # Metadata counts only under the tag key.
    assert match_signal(ACME, "acme-42", tag_key="team") is None
    assert normalize_name("  Müller & Ünïcode Co. 2 ") == "mullerunicodeco2"
    assert match_signal(StripeCustomer("cus_m", "Müller GmbH"), "muller-gmbh") == (0.8, "name")
    assert MATCH_CONFIDENCE == {
        "exact_id": 1.0,
        "metadata": 0.95,
        "email": 0.9,
        "name": 0.8,
        "email_domain": 0.7,
    }


CUSTOMERS = [
    ACME,
    StripeCustomer("cus_beta", "BetaCo", "ops@beta.co"),
    StripeCustomer("cus_delta", "Delta LLC", "billing@delta.io"),
    StripeCustomer("cus_eps", "Epsilon LLC"),
    StripeCustomer("cus_twin1", "Twin"),
    StripeCustomer("cus_twin2", "TWIN"),
]
TAGS = ["cus_acme", "acme-corp", "beta", "billing@delta.io", "epsilon_llc", "twin", "nobody"]


def _got(props: list) -> list[tuple[str, str, float, str | None]]:
    return [(p.tag_value, p.stripe_customer_id, p.confidence, p.match_reason) for p in props]


def test_proposals_one_per_signal_and_ambiguity() -> None:
    props = propose_auto_matches(CUSTOMERS, TAGS)
    assert _got(props) == [
        ("beta", "cus_beta", 0.7, "email_domain"),
        ("billing@delta.io", "cus_delta", 0.9, "email"),
        ("cus_acme", "cus_acme", 1.0, "exact_id"),
        ("epsilon_llc", "cus_eps", 0.8, "name"),
    ]
    # "acme-corp" names cus_acme (0.8), whose best tag is its own id (1.0): not proposed, as a
    # customer holds one mapping per tag key. "twin" ties cus_twin1 and cus_twin2: ambiguous.
    assert props[0].to_dict() == {
        "id": proposal_id("cus_beta", "beta"),
        "stripeCustomerId": "cus_beta",
        "customerName": "BetaCo",
        "tagValue": "beta",
        "confidence": 0.7,
        "matchReason": "email_domain",
    }


def test_customer_matching_two_tags_equally_is_ambiguous() -> None:
    customers = [StripeCustomer("cus_1", "Acme", "ops@acme.io")]
    assert propose_auto_matches(customers, ["acme", "ACME!"]) == []
    # A stronger signal on one side decides it.
    assert _got(propose_auto_matches(customers, ["acme.io", "ops@acme.io"])) == [
        ("ops@acme.io", "cus_1", 0.9, "email")
    ]


def test_decisions_are_never_overridden() -> None:
    # A manual mapping of the tag (to anyone) or of the customer (to any tag) wins.
    manual_tag = [CustomerMapping("cus_other", "beta")]
    assert "beta" not in [p.tag_value for p in propose_auto_matches(CUSTOMERS, TAGS, manual_tag)]
    manual_cust = [CustomerMapping("cus_acme", "acme-corp")]
    got = _got(propose_auto_matches(CUSTOMERS, TAGS, manual_cust))
    assert ("cus_acme", "cus_acme", 1.0, "exact_id") not in got
    assert [t for t, *_ in got] == ["beta", "billing@delta.io", "epsilon_llc"]
    # An accepted auto match counts like a manual one; a pending one is recomputed.
    accepted = [CustomerMapping("cus_eps", "epsilon_llc", "auto", "accepted", confidence=0.8)]
    assert [p.tag_value for p in propose_auto_matches(CUSTOMERS, TAGS, accepted)] == [
        "beta",
        "billing@delta.io",
        "cus_acme",
    ]
    pending = [CustomerMapping("cus_eps", "epsilon_llc", "auto", "pending", confidence=0.8)]
    assert propose_auto_matches(CUSTOMERS, TAGS, pending) == propose_auto_matches(CUSTOMERS, TAGS)
    # A mapping of another tag key does not hold the customer's `customer` slot.
    other_key = [CustomerMapping("cus_acme", "x", tag_key="team")]
    assert propose_auto_matches(CUSTOMERS, TAGS, other_key) == propose_auto_matches(CUSTOMERS, TAGS)


def test_rejected_pair_is_not_proposed_and_unblocks_the_runner_up() -> None:
    got = _got(propose_auto_matches(CUSTOMERS, TAGS, rejected=[("cus_acme", "cus_acme")]))
    # cus_acme's best remaining tag is "acme-corp" (name), and it is that tag's only candidate.
    assert got == [
        ("acme-corp", "cus_acme", 0.8, "name"),
        ("beta", "cus_beta", 0.7, "email_domain"),
        ("billing@delta.io", "cus_delta", 0.9, "email"),
        ("epsilon_llc", "cus_eps", 0.8, "name"),
    ]
    # Rejecting one twin leaves the other as the tag's single candidate.
    got = _got(propose_auto_matches(CUSTOMERS, ["twin"], rejected=[("cus_twin1", "twin")]))
    assert got == [("twin", "cus_twin2", 0.8, "name")]


def test_deterministic_ids_and_order() -> None:
    base = propose_auto_matches(CUSTOMERS, TAGS, scope="ws1")
    for perm_c, perm_t in zip(
        itertools.islice(itertools.permutations(CUSTOMERS), 0, 720, 97),
        itertools.islice(itertools.permutations(TAGS), 0, 5040, 613),
        strict=False,
    ):
        assert propose_auto_matches(list(perm_c), list(perm_t), scope="ws1") == base
    ids = [p.id for p in base]
    assert ids == [proposal_id(p.stripe_customer_id, p.tag_value, "customer", "ws1") for p in base]
    assert all(uuid.UUID(i).version == 5 for i in ids)
    other = [p.id for p in propose_auto_matches(CUSTOMERS, TAGS, scope="ws2")]
    assert set(ids).isdisjoint(other)  # one id space per workspace
    assert proposal_id("a", "b") == str(
        uuid.uuid5(uuid.UUID("6f0c8f1e-5a37-4d7e-9a51-3c1b1f9e2a10"), "\x1fcustomer\x1fa\x1fb")
    )
