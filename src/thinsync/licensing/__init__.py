"""L4: licences — signed files, modes that require automatic synchronization, terminal counts."""
