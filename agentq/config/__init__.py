"""The configuration: pydantic models, loading with every problem listed at once, value types."""
