"""The gateway: REST + WebSocket in front of the functions (and, later, the web UI)."""
