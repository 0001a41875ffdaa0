"""Speech-API compatibility gateway for Gradium."""
