"""Model hosts and their FHPO agents (one process per model replica, confluent-kafka)."""
