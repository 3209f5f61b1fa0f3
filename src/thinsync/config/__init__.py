"""L3: configuration use cases (read, create, replace, patch, delete, history) over every kind."""
