"""The metrics tests use the API tests' fixtures: an attached agent and its client."""

from tests.api.conftest import agent, api

__all__ = ["agent", "api"]
