"""Shipped recipes (YAML): ``tfface train recipes/<name>.yaml`` or ``tfface train <name>`` from any folder."""
