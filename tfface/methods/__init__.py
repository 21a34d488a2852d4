"""tfface.methods."""
