-- Helm's release records (one row per revision), kept here instead of in
-- Secrets in each preview namespace: previewd then needs no access to
-- Secrets for its releases, and one query tells which releases changed
-- (state.HelmReleases). key is Helm's record name
-- (sh.helm.release.v1.<name>.v<version>); labels are the record's labels
-- (Helm's name, owner, status, version and any custom ones); body is the
-- release as gzip-compressed JSON; seq changes with every write.
CREATE SEQUENCE helm_releases_seq;

CREATE TABLE helm_releases (
    namespace  text        NOT NULL CHECK (namespace <> ''),
    key        text        NOT NULL CHECK (key <> ''),
    name       text        NOT NULL,
    version    integer     NOT NULL,
    status     text        NOT NULL,
    labels     jsonb       NOT NULL,
    body       bytea       NOT NULL,
    seq        bigint      NOT NULL DEFAULT nextval('helm_releases_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, key)
);

CREATE INDEX helm_releases_name_idx ON helm_releases (name, namespace);
