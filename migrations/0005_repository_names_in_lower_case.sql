-- GitHub's repository names are case-insensitive, and previewd now keeps
-- them in lower case (the configuration's names are folded when loaded).
-- Where a change of letter case in the configuration already made a second
-- row for one pull request, the row updated last is kept (its comment is
-- the one previewd keeps editing).
DELETE FROM previews p USING previews q
 WHERE lower(p.repo) = lower(q.repo) AND p.number = q.number AND p.id <> q.id
   AND (p.updated_at, p.id) < (q.updated_at, q.id);
UPDATE previews SET repo = lower(repo) WHERE repo <> lower(repo);
