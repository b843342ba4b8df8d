"""Outbound email: connecting mailboxes, queueing an email, and delivering it at most once.

One package, one module per concern, because each changes for a different reason:

- `content`: what a user may put in an email (subject, addresses, sanitised HTML, text part).
- `snapshot`: the email as the lead's timeline records it.
- `queue`: `POST /outbound-email`, i.e. validate, store as `queued`, hand the id to the broker.
- `connections`: mailboxes connected by OAuth consent and their (encrypted) tokens.
- `delivery`: the worker's state machine: claim, send, retry, mark sent or failed.
- `stuck`: the periodic check for rows that stopped progressing.

Import from the module that owns a name (`from crm.email.queue import email_queue`); this file
re-exports nothing, so importing one concern does not load the others.
"""
