-- Whether the enrichment's `incident.enriched` event reached the broker. An event for an incident whose current
-- revision is already enriched and announced is skipped: a storm of growth events costs one enrichment, not one
-- each, and a crash between commit and publish still leads to the event being sent on redelivery.
ALTER TABLE enrichments ADD COLUMN published boolean NOT NULL DEFAULT false;
