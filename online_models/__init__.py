"""online_models package."""
