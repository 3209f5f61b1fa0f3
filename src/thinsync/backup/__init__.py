"""L4: backups in an open format (gzip JSON with a manifest), their directory, and restore."""
