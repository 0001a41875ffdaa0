"""WebSocket sessions: the client port, headless sessions (and, below, the session core and its driver)."""
