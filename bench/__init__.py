"""`python -m bench`: agent-executor under load, end to end and against its floor.

The service path: jobs published to NATS JetStream, run by `agent-executor
serve` (production profile: PostgreSQL checkpoints and ledger, Dragonfly
streams, NATS results), measured from publish to result event. The floor: the
same compiled graphs invoked in-process on `AsyncPostgresSaver`, on the same
database, at the same concurrency, with no service around them.
See docs/performance.md.
"""
