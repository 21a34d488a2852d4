"""tfface.embed."""
