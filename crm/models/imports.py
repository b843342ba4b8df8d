"""CSV imports: the job, its uploaded file (in the database, in slices) and its failed rows.

Why the file lives in PostgreSQL rather than on a file system or in object storage: the web
process that receives the upload and the Celery worker that applies it may run on different
hosts, and the database is the one store every process of this project already shares. The file
is kept as 1 MB slices (`ImportFileSlice`), so neither the upload nor the worker ever holds the
whole file in memory, and it is deleted with the job. See docs/api.md "Import and export".

The job row is also the worker's checkpoint: `checkpoint_offset` (the byte after the last
applied data row) and the counters advance in the same transaction as each chunk's writes, so a
worker that dies resumes exactly after the last committed chunk.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from axiomatic.tenancy import TenantModel, TenantQuerySet


class Import(TenantModel):
    """One CSV upload being (or having been) applied to companies, contacts or leads."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    object_type = models.CharField(max_length=10)
    file_name = models.CharField(max_length=255)
    file_size = models.BigIntegerField(default=0)
    options = models.JSONField(default=dict)  # mapping (resolved), matchOn, onMatch, clearEmpty, createCompanies
    headers = models.JSONField(default=list)  # the header row as uploaded
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    dry_run = models.BooleanField(default=False)
    # Uploaded through the page and waiting for its mapping to be confirmed: never claimed or
    # counted as waiting until `import_start` clears it.
    staged = models.BooleanField(default=False)
    total_rows = models.IntegerField(default=0)
    processed_rows = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    unchanged = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_type = models.CharField(max_length=10, default="user")  # who the change feed names
    actor_id = models.CharField(max_length=64, null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    checkpoint_offset = models.BigIntegerField(default=0)  # byte offset of the next data row
    lease_token = models.UUIDField(null=True, blank=True)  # the worker run holding the job
    heartbeat_at = models.DateTimeField(null=True, blank=True)  # last committed chunk of that run

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["entity", "-created_at", "id"], name="import_entity_created_idx"),
            models.Index(fields=["entity", "status"], name="import_entity_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.object_type} import {self.file_name} ({self.status})"


class ImportFileSlice(models.Model):
    """One slice (≤ 1 MB) of an uploaded file, in order; read back one at a time."""

    id = models.BigAutoField(primary_key=True)
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Import, on_delete=models.CASCADE, related_name="slices")
    number = models.IntegerField()
    data = models.BinaryField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="import_slice_uniq")]

    def __str__(self) -> str:
        return f"slice {self.number} of {self.job_id}"


class ImportRowError(models.Model):
    """A data row the import could not apply: its number, the column and the message, and the row
    as uploaded (for the error file, ready to fix and upload again)."""

    id = models.BigAutoField(primary_key=True)
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Import, on_delete=models.CASCADE, related_name="row_errors")
    row = models.IntegerField()
    column = models.CharField(max_length=255, blank=True)
    message = models.TextField()
    cells = models.JSONField(default=list)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["row", "id"]
        indexes = [models.Index(fields=["job", "row", "id"], name="import_error_job_row_idx")]

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"
