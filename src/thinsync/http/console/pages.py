"""Every console page that has help (docs/help/<id>.md): F1 and the Help button open it.

A test checks that each id here has its help file and that every page the console renders names one.
"""

from __future__ import annotations

from thinsync.model.registry import COLLECTIONS

# The configuration tree in the layout's side bar (ThinManager's tree: terminals, display clients...).
TREE_KINDS = ("terminals", "display-clients", "display-servers", "users", "locations")

# Kinds with generic list / create / edit / delete pages (terminals are created with the wizard): every
# collection kind of the registry.
GENERIC_KINDS = tuple(COLLECTIONS)

PAGES: dict[str, str] = {
    "login": "Log in",
    "home": "Overview",
    "terminals": "Terminals",
    "terminal-groups": "Terminal groups",
    "display-clients": "Display clients",
    "display-servers": "Display servers",
    "users": "Users",
    "access-groups": "Access groups",
    "locations": "Locations",
    "admins": "Admin accounts",
    "security-groups": "Security groups",
    "schedules": "Schedules",
    "settings": "Settings",
    "license": "Licence",
    "server-list": "Server List",
    "server-list-sync": "Auto-synchronization Configuration",
    "server-info": "Enter Server Information",
    "server-list-pair": "Finish: pair the servers",
    "server-list-result": "Server list saved",
    "sync": "Synchronization",
    "terminal-name": "Terminal Name",
    "terminal-hardware": "Terminal Hardware",
    "terminal-display-clients": "Display Client Selection",
    "terminal-options": "Terminal Options",
    "terminal-monitor-list": "Server Monitor List",
    "terminal-connection-monitor": "Connection Monitor",
    "terminal-status": "Terminal status",
    "backups": "Backup / Restore",
    "restore": "Restore: check the changes",
    "manual-sync": "Synchronize Configurations",
    "manual-sync-review": "Synchronize Configurations: check the changes",
    "history": "History",
    "error": "Errors",
}
