-- What a preview's Ready deploy was made of: a fingerprint of the chart
-- (its files) and of the repository's settings that produce the Helm
-- values. A configuration or chart change plans an upgrade. '' (rows of
-- earlier versions): unknown, which is planned as a change once.
ALTER TABLE previews ADD COLUMN deployed_fingerprint text NOT NULL DEFAULT '';
