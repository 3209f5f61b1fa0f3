"""L3: admin log-in, bearer tokens, permissions."""
