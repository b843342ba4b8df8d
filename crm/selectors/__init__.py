"""Reads with real query logic (HackSoft's selectors): the dashboard, the board, the timeline.

Services write and enforce rules; selectors only read, and are shared by the API, the pages and
the admin so that one question is always answered by one query.
"""
