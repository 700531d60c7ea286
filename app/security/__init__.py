"""Keys, users and roles, access checks, break-glass and the audit log."""
