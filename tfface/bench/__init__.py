"""tfface.bench."""
