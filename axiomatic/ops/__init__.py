"""Running the service: failing well when the database is away, probes, bounded work, metrics, logs.

See docs/operations.md. Nothing here imports an app: apps report to the core (e.g.
`axiomatic.metrics.record_outbound_email`), never the reverse.
"""
