"""L5: inbound HTTP adapters (admin REST API, console, terminal and peer routes)."""
