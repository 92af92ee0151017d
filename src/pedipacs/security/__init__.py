"""Users, roles and the audit trail."""
