"""tfface.retrieval."""
