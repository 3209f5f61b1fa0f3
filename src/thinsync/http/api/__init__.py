"""The admin REST API under /api/v1."""
