"""L4: terminals — boot documents, status lights, unknown terminals, change notification."""
