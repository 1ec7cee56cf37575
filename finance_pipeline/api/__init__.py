"""The read API (FastAPI): five families over one auth, tenancy and conventions layer (docs/api.md).

`create_app(settings)` builds it; `finance-pipeline api` serves it with uvicorn.
"""

from finance_pipeline.api.app import create_app

__all__ = ["create_app"]
