-- GitHub's id of each preview's repository. A repository keeps its id
-- when it is renamed or transferred: when the configuration is changed to
-- the new name, previews recorded under the old name are found by this id
-- and moved (state.Store.Rename) instead of being orphaned and recreated.
-- 0: not known yet (filled by the next cycle that lists the repository).
ALTER TABLE previews ADD COLUMN repo_id bigint NOT NULL DEFAULT 0;
