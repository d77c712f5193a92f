"""The local HTTP API, the live dashboard and Prometheus metrics (see docs/api.md)."""
