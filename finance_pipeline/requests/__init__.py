"""Requests the pipeline picks up: refreshes of the marts over a range of days and Stripe syncs,
written by the API and the CLI, run by the requests sensor or inline (docs/requests.md)."""
