"""The OpenAI-compatible chat-completions provider of advisory memos: the only HTTP call they make.

Any failure (not configured, timeout, HTTP error, unparsable answer) raises MemoProviderError, and
`lib.advisory.write_memo` then falls back to the rule-based writer. It does not retry: a memo is
written on the next run, and the rule-based one is recorded meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from finance_pipeline.lib.advisory import (
    SYSTEM_PROMPT,
    MemoDraft,
    MemoProviderError,
    parse_memo_answer,
    to_jsonable,
)


@dataclass(slots=True)
class OpenAICompatibleProvider:
    """Chat-completions client for any OpenAI-compatible endpoint, configured by explicit args."""

    base_url: str | None
    api_key: str | None
    model: str | None
    timeout: float = 20.0
    name: str = "openai_compatible"

    def write(self, grounding: Mapping[str, Any]) -> MemoDraft:
        """POST the grounding JSON as the only user message and parse the JSON answer."""
        if not self.base_url or not self.api_key or not self.model:
            missing = [k for k in ("base_url", "api_key", "model") if not getattr(self, k)]
            raise MemoProviderError(
                "configuration_error",
                "ai_not_configured",
                f"The AI provider is not configured: missing {', '.join(missing)}.",
            )
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": json.dumps(to_jsonable(grounding), sort_keys=True)},
            ],
        }
        url = self.base_url.rstrip("/") + "/chat/completions"
        try:
            resp = requests.post(
                url,
                json=body,
                headers={"Authorization": f"Bearer {self.api_key}"},
                timeout=self.timeout,
            )
        except requests.Timeout as exc:
            raise MemoProviderError(
                "upstream_error",
                "ai_timeout",
                f"The AI provider did not answer within {self.timeout}s.",
            ) from exc
        except requests.RequestException as exc:
            raise MemoProviderError(
                "upstream_error",
                "ai_unavailable",
                f"The AI provider is unreachable ({type(exc).__name__}).",
            ) from exc
        if resp.status_code != 200:
            raise MemoProviderError(
                "upstream_error",
                "ai_http_error",
                f"The AI provider returned HTTP {resp.status_code}.",
            )
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise MemoProviderError(
                "upstream_error",
                "ai_invalid_response",
                "The AI provider's response is not a chat completion.",
            ) from exc
        if not isinstance(content, str):
            raise MemoProviderError(
                "upstream_error", "ai_invalid_response", "The completion has no text content."
            )
        return parse_memo_answer(content)
