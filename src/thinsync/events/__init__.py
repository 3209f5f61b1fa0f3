"""L3: the node-local event log (categories: server, auth, config, sync, terminal, backup, license)."""
