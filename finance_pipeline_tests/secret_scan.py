"""Where a secret shows in clear: the one scan used by every secrets-never-leak test (docs/security.md).

A secret counts as leaked when its exact bytes appear in a file the product wrote (warehouse, Dagster
storage, event and compute logs, reports), in captured output, or in an answer. The key files that
hold the master key and the JWT signing key are the secrets' own home and are not scanned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from finance_pipeline.secrets import LOCAL_KEY_FILE

KEY_FILES = frozenset({LOCAL_KEY_FILE, ".jwt_secret"})


def written_files(*roots: Path) -> dict[str, bytes]:
    """Every file under the roots except the key files, by path, with its bytes."""
    places: dict[str, bytes] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name not in KEY_FILES:
                places[str(path)] = path.read_bytes()
    return places


def leaks(secrets: Mapping[str, str], places: Mapping[str, bytes]) -> list[str]:
    """One line per secret found in a place: "<secret name> in <place>"; empty when none leaked."""
    empty = [name for name, value in secrets.items() if not value]
    if empty:
        raise ValueError(f"secrets without a value cannot be scanned for: {empty}")
    return [
        f"{name} in {where}"
        for name, value in secrets.items()
        for where, content in places.items()
        if value.encode() in content
    ]


def joined(texts: Iterable[str]) -> bytes:
    """Many captured texts (response bodies, log messages) as one place to scan."""
    return "\n".join(texts).encode()


_METADATA = """metadataEntries { label description
  ... on TextMetadataEntry { text } ... on UrlMetadataEntry { url } ... on PathMetadataEntry { path }
  ... on JsonMetadataEntry { jsonString } ... on MarkdownMetadataEntry { mdStr }
  ... on TableMetadataEntry { table { records } } ... on NotebookMetadataEntry { path } }"""
_ERROR = "error { message stack className cause { message stack } }"
_RUNS = """{
  runsOrError { ... on Runs { results { runId jobName status runConfigYaml tags { key value } } } }
  partitionBackfillsOrError { ... on PartitionBackfills { results {
    id status tags { key value } error { message stack } } } }
}"""
_LOGS = f"""query($runId: ID!, $cursor: String) {{
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {{
    ... on EventConnection {{ cursor hasMore events {{ __typename
      ... on MessageEvent {{ message stepKey }}
      ... on MaterializationEvent {{ {_METADATA} }}
      ... on ObservationEvent {{ {_METADATA} }}
      ... on AssetCheckEvaluationEvent {{ evaluation {{ {_METADATA} }} }}
      ... on ExecutionStepFailureEvent {{ {_ERROR} }}
      ... on RunFailureEvent {{ {_ERROR} }}
      ... on EngineEvent {{ {_METADATA} {_ERROR} }}
      ... on HookErroredEvent {{ {_ERROR} }}
    }} }}
    ... on PythonError {{ message }}
  }}
}}"""


def ui_answers(dagster_home: Path) -> dict[str, bytes]:
    """What the Dagster UI shows of the instance's runs, as the GraphQL answers it reads them
    from (the UI shows nothing GraphQL does not return): every run's config and tags, every
    backfill, and every run's event log (messages, metadata, errors); by query, as JSON."""
    import asyncio
    import json

    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import EmptyWorkspaceTarget
    from dagster_graphql.schema import create_schema

    schema = create_schema()
    places: dict[str, bytes] = {}
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        # No code location: runs, backfills and event logs come from the instance alone.
        with WorkspaceProcessContext(instance, EmptyWorkspaceTarget()) as process:

            def ask(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
                context = process.create_request_context()
                result = asyncio.run(
                    schema.execute_async(query, context_value=context, variable_values=variables)
                )
                if result.errors:
                    raise AssertionError(f"GraphQL: {result.errors}")
                return result.data

            runs = ask(_RUNS)
            places["GraphQL runs and backfills"] = json.dumps(runs).encode()
            for run in runs["runsOrError"]["results"]:
                cursor, pages = None, []
                while True:
                    page = ask(_LOGS, {"runId": run["runId"], "cursor": cursor})["logsForRun"]
                    assert "events" in page, page
                    pages.append(json.dumps(page["events"]))
                    if not page["hasMore"]:
                        break
                    cursor = page["cursor"]
                places[f"GraphQL event log of run {run['runId']}"] = "\n".join(pages).encode()
    finally:
        instance.dispose()
    return places
