"""Email: connecting mailboxes, queueing an email, delivering it at most once, reading replies.

One package, one module per concern, because each changes for a different reason:

- `content`: what a user may put in an email (subject, addresses, sanitised HTML, text part).
- `snapshot`: the email as the lead's timeline records it.
- `queue`: `POST /outbound-email`, i.e. validate, store as `queued`, hand the id to the broker.
- `connections`: mailboxes connected by OAuth consent and their (encrypted) tokens.
- `delivery`: the worker's state machine: claim, send, retry, mark sent or failed.
- `stuck`: the periodic check for rows that stopped progressing.
- `inbound`: the inbound sync, i.e. replies and received mail from contacts read back from the
  mailboxes (Gmail history, Graph delta), recorded once per entity.

Import from the module that owns a name (`from crm.email.queue import email_queue`); this file
re-exports nothing, so importing one concern does not load the others.
"""
