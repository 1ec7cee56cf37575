"""Retry backoff: exponential with jitter, capped, honouring a server's Retry-After.

The one policy for every retrying caller (the Stripe gateway, alert webhook delivery). It only
computes delays; the callers sleep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class BackoffPolicy:
    """Exponential backoff with jitter, capped, honouring a server's Retry-After.

    Retry n waits a random time in the upper half of min(max, base * 2^(n-1)): spread out, yet
    never much shorter than the exponential step. A Retry-After longer than that wins (capped).
    """

    base_seconds: float = 0.25
    max_seconds: float = 20.0
    max_attempts: int = 8
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** (attempt - 1)))
        jittered = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None and retry_after >= 0:
            return min(self.max_seconds, max(retry_after, jittered))
        return jittered


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None when absent or unparsable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
