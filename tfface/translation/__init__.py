"""Feature translation products: translate a feature file, upgrade a gallery index."""
