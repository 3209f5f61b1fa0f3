"""L4: automatic synchronization between the servers of the server list."""
