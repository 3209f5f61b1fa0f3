"""L1: pydantic models of every configuration kind and cross-object validation (pure)."""
