"""Pure business logic: no Dagster imports. Assets and the API call into these modules."""
