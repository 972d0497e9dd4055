"""Dagster orchestration of the Kedro project: translation (kedro-dagster) made quiet and fast,
assets described from the catalog, code versions from parameters, and the project's checks."""
