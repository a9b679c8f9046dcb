"""fedrift: keep a fleet of streaming models sharp while the data under them drifts."""

__version__ = "0.1.0"
