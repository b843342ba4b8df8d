"""Bulk writes: the set-based engine (`engine`), the CSV importer (`importer`), its Celery tasks
(`tasks`), CSV export (`export`) and the import field catalogue (`catalogue`)."""
