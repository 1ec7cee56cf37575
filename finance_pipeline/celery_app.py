"""The Celery app the project's workers run (`celery -A finance_pipeline.celery_app worker`,
started by scripts/celery.sh): dagster-celery's step task on the broker of FP_CELERY_BROKER_URL.

This module is a worker's entry point, imported by the Celery command line only: it reads the
settings when imported, as Celery needs the app at import time."""

from __future__ import annotations

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from finance_pipeline import definitions as _definitions
from finance_pipeline.settings import get_settings

_settings = get_settings()
app = make_app(
    CeleryExecutor.for_cli(
        broker=_settings.celery_broker_url, backend=_settings.celery_backend_url
    ).app_args()
)
# The task the celery executor submits for each step (dagster_celery.tasks.execute_plan).
execute_plan = create_task(app)
# Imported here, in the worker's main process, so that every forked pool process starts with the
# code location loaded instead of importing it on its first step.
CODE_LOCATION = _definitions.defs
