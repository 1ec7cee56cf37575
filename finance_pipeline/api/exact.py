"""Money in JSON as exact decimal numbers (`45230.00`), never a float artifact nor a string.

Families whose documents show decimal amounts (the 000 platform finance API's `"current_mrr":
45230.00`) build a `Decimal` from micro-units (`lib.money.micros_to_decimal`), declare the field
`ExactNumber` (a JSON number in OpenAPI), and return `exact_json(model)`: the Decimal is written
digit for digit. Standard encoders would go through float (45230.0) or quote it ("45230.00").
"""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from typing import Annotated, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, WithJsonSchema

#: A decimal amount that the API writes as an exact JSON number.
ExactNumber = Annotated[Decimal, WithJsonSchema({"type": "number"})]

# A per-process marker no client string can contain by chance; letters and digits only, so the
# encoder never escapes it.
_MARK = f"fpexact{secrets.token_hex(8)}"
_MARKED = re.compile(f'"{_MARK}([-+0-9.eE]+){_MARK}"')


def _mark(value: Any) -> str:
    if isinstance(value, Decimal):
        return exact_number(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def exact_number(value: Decimal) -> str:
    """`value` as a string that `dumps_exact` writes as the exact JSON number: a caller that
    builds a large document puts these in place of Decimals, so the encoder runs without a
    Python call per number."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    return f"{_MARK}{value}{_MARK}"


def dumps_exact(content: Any) -> str:
    """JSON text of `content` with every Decimal as an exact number (`Decimal("0.10")` -> 0.10)."""
    text = json.dumps(content, default=_mark, ensure_ascii=False, separators=(",", ":"))
    return _MARKED.sub(lambda m: m.group(1), text)


class ExactJSONResponse(JSONResponse):
    """A JSON response whose Decimal values are exact JSON numbers."""

    def render(self, content: Any) -> bytes:
        """The body: `dumps_exact` of the content, UTF-8."""
        return dumps_exact(content).encode()


def exact_json(model: BaseModel, status_code: int = 200) -> ExactJSONResponse:
    """Respond with a model whose `ExactNumber` fields keep every digit (declare the model as the
    route's `response_model` too, for OpenAPI)."""
    return ExactJSONResponse(model.model_dump(mode="python"), status_code=status_code)
