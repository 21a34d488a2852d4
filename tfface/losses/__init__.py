"""tfface.losses."""
