"""NATS JetStream: job intake (a durable pull consumer) and result events."""
