"""thinsync: thin-client management server with automatic synchronization."""

__version__ = "0.1.0"
# Bumped when the peer protocol or the stored schema changes incompatibly (checked by peers).
PROTOCOL_VERSION = 2
