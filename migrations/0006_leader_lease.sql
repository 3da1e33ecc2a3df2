-- The leader's lease. The process that holds an instance's advisory lock
-- renews its row every few seconds. A leader that is frozen (SIGSTOP, a
-- stalled VM) or cut off keeps its PostgreSQL session, and with it the
-- lock, until TCP gives up (about 2 hours with Linux defaults); a standby
-- that finds the lease expired ends that session (pg_terminate_backend of
-- the pid recorded here, only if it still holds the lock) and takes over.
CREATE TABLE leader_leases (
    instance   text        PRIMARY KEY,
    pid        integer     NOT NULL,
    renewed_at timestamptz NOT NULL
);
