package state

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Leadership is held by one previewd process per instance at a time: a
// PostgreSQL session-level advisory lock on a connection taken out of the
// pool for as long as the process leads. A process that dies, or loses its
// connection, releases the lock with its session, so a standby takes over
// within one retry interval.
//
// Why PostgreSQL and not a Kubernetes Lease: the database is already a
// hard dependency (nothing can be done without it), the lock goes the
// moment the leader's session ends instead of after a lease duration, and
// it needs no extra RBAC. A leader that cannot reach PostgreSQL could not
// record anything either, so it must stop acting, which Lost tells it.
type Leadership struct {
	conn *pgxpool.Conn
	key  int64
	lost chan struct{}
	stop chan struct{}
	done chan struct{} // closed when watch has returned: conn is ours again
	err  error
}

// ErrNotLeader is returned by TryLead when another process leads.
var ErrNotLeader = errors.New("another previewd process of this instance is the leader")

func leaderKey(instance string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("previewd-leader:" + instance))
	return int64(h.Sum64() & 0x7fffffffffffffff)
}

// TryLead takes the leadership of instance if it is free.
func (s *Store) TryLead(ctx context.Context, instance string, check time.Duration) (*Leadership, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquiring a connection for leader election: %w", err)
	}
	key := leaderKey(instance)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		conn.Release()
		return nil, fmt.Errorf("trying the leader lock: %w", err)
	}
	if !got {
		conn.Release()
		return nil, ErrNotLeader
	}
	l := &Leadership{conn: conn, key: key, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	if check <= 0 {
		check = 2 * time.Second
	}
	go l.watch(check)
	return l, nil
}

// Lead blocks until this process is the leader (retrying every interval)
// or ctx ends.
func (s *Store) Lead(ctx context.Context, instance string, interval time.Duration) (*Leadership, error) {
	for {
		l, err := s.TryLead(ctx, instance, interval)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, ErrNotLeader) && ctx.Err() == nil {
			// PostgreSQL unreachable: keep trying, the caller logs.
			_ = err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// watch pings the session that holds the lock; if it fails the lock may
// be gone (the server dropped the session), so leadership is lost.
func (l *Leadership) watch(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), every)
			var held bool
			err := l.conn.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory'
				AND pid = pg_backend_pid() AND granted AND ((classid::bigint << 32) | objid::bigint) = $1`, l.key).Scan(&held)
			cancel()
			if err == nil && !held {
				err = errors.New("the advisory lock is no longer held")
			}
			if err != nil {
				l.err = fmt.Errorf("leadership lost: %w", err)
				close(l.lost)
				return
			}
		}
	}
}

// Lost is closed when leadership is lost; Err then says why.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Err is why leadership was lost.
func (l *Leadership) Err() error { return l.err }

// Release gives leadership up (for a clean shutdown).
func (l *Leadership) Release(ctx context.Context) {
	select {
	case <-l.stop:
		return
	default:
		close(l.stop)
	}
	<-l.done // a connection is not safe for concurrent use
	_, _ = l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.key)
	l.conn.Release()
}
