"""tfface.nets."""
