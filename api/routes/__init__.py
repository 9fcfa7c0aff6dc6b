"""Own API v1 routes (thin: services hold the rules)."""
