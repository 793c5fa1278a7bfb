"""The HTTP API (v1) with OpenAPI at ``/openapi.json``."""
