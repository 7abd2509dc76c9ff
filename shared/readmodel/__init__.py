"""The one read model of incidents: their alerts, timeline and enrichment, as the enricher, the reporter and the web
read them (queries.sql, models.py, incidents.py). The correlator is the only writer."""
