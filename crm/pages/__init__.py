"""The sales team's server-rendered pages (htmx where it helps): dashboard, tasks, companies,
contacts and the header's search. Reads go through `crm.selectors`, writes through
`crm.services`, so the pages and the JSON API answer every question and refuse every write alike.
"""
