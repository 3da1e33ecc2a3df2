-- previewd's memory: what it intends to run, what it tried, and the HTTP
-- cache of its GitHub reads. The cluster is the truth about what runs.
-- schema_migrations is created by state.Store.Migrate before any migration.

-- One row per pull request previewd has seen open.
CREATE TABLE previews (
    id                bigserial   PRIMARY KEY,
    repo              text        NOT NULL CHECK (repo <> ''),
    number            integer     NOT NULL CHECK (number > 0),
    namespace         text        NOT NULL DEFAULT '',
    branch            text        NOT NULL DEFAULT '',
    title             text        NOT NULL DEFAULT '',
    -- head SHA of the open PR, and the SHA of the last successful deploy
    desired_sha       text        NOT NULL DEFAULT '',
    deployed_sha      text        NOT NULL DEFAULT '',
    status            text        NOT NULL DEFAULT 'pending'
        CONSTRAINT previews_status_check
        CHECK (status IN ('pending', 'deploying', 'ready', 'failed', 'deleting', 'deleted')),
    -- deploy attempts since desired_sha was first seen (drives backoff)
    attempts          integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- earliest time of the next retry after a failure; NULL: none planned
    next_attempt_at   timestamptz,
    last_error        text        NOT NULL DEFAULT '',
    -- the PR comment previewd keeps up to date, and a hash of the body last written
    comment_id        bigint,
    comment_hash      text        NOT NULL DEFAULT '',
    -- when desired_sha was first seen: where deploy latency starts
    sha_first_seen_at timestamptz NOT NULL,
    deploy_started_at timestamptz,
    ready_at          timestamptz,
    -- when the PR was confirmed closed (deletion began); NULL while open
    closed_at         timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT previews_repo_number_key UNIQUE (repo, number)
);

-- Every deploy previewd started, and how it ended.
CREATE TABLE deploy_attempts (
    id          bigserial   PRIMARY KEY,
    preview_id  bigint      NOT NULL REFERENCES previews (id) ON DELETE CASCADE,
    sha         text        NOT NULL,
    -- 1, 2, ... per (preview, sha)
    attempt     integer     NOT NULL CHECK (attempt > 0),
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    outcome     text CHECK (outcome IN ('ready', 'failed', 'cancelled')),
    error       text        NOT NULL DEFAULT '',
    CONSTRAINT deploy_attempts_preview_sha_attempt_key UNIQUE (preview_id, sha, attempt),
    CONSTRAINT deploy_attempts_finished_check CHECK ((finished_at IS NULL) = (outcome IS NULL))
);

-- Backs httpcache.Cache so that a restart starts with warm ETags.
CREATE TABLE http_cache (
    key        text        PRIMARY KEY,
    value      bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX http_cache_updated_at_idx ON http_cache (updated_at);
