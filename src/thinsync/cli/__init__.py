"""L7: the `thinsync` command line (click + rich)."""
