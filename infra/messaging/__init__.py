"""Kafka (topics, relay, feeds) and Avro (schemas, codec, release tool)."""
