"""Faust stream processors: thin agents that wire the pure core to the catalog topics."""
