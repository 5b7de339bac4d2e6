"""target_server."""
