"""The executor of the refresh jobs, chosen per run: multiprocess (the default), in-process, or
dagster-celery workers (docs/scaling.md). FP_EXECUTOR picks it for the runs the schedule and the
sensors launch, through their run config."""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    multi_or_in_process_executor,
)
from dagster._core.execution.retries import RetryMode
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor

from finance_pipeline.settings import Settings


def _requirements(config: dict[str, Any]) -> list[dg.ExecutorRequirement]:
    # Steps in other processes (or on other machines) share the run through a persistent instance.
    return [] if "in_process" in config else dg.multiple_process_executor_requirements()


@dg.executor(
    name="refresh_executor",
    config_schema=dg.Field(
        dg.Selector(
            {
                "multiprocess": MULTI_PROC_CONFIG,
                "in_process": IN_PROC_CONFIG,
                "celery": CELERY_CONFIG,
            }
        ),
        default_value={"multiprocess": {}},
    ),
    requirements=_requirements,
)
def refresh_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Multiprocess or in-process as Dagster's default executor, or each step as a Celery task
    on the workers listening on the broker."""
    config = init_context.executor_config
    if "celery" not in config:
        return multi_or_in_process_executor.executor_creation_fn(init_context)  # type: ignore[misc]
    celery = config["celery"]
    return CeleryExecutor(
        broker=celery.get("broker"),
        backend=celery.get("backend"),
        config_source=celery.get("config_source"),
        include=celery.get("include"),
        retries=RetryMode.from_config(celery["retries"]),
    )


def executor_run_config(settings: Settings) -> dict[str, Any]:
    """The run config choosing the deployment's executor (FP_EXECUTOR) for a launched refresh
    run; empty for the default multiprocess executor."""
    if settings.executor != "celery":
        return {}
    return {
        "execution": {
            "config": {
                "celery": {
                    "broker": settings.celery_broker_url,
                    "backend": settings.celery_backend_url,
                }
            }
        }
    }
