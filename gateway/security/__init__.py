"""API keys and the audit trail: who may call what, and a tamper-evident record of what admins did."""
