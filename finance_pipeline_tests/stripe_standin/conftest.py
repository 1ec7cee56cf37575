"""Make the stand-in fixtures available to these tests (the lead registers the plugin globally)."""

from finance_pipeline_dev.pytest_plugin import (  # noqa: F401
    stripe_standin,
    stripe_standin_factory,
)
