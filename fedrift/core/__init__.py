"""The pure core: drift scoring, optimisation, aggregation, routing and shadow statistics.

Nothing in this package imports Kafka; the simulator and the stream processors both call it.
"""
