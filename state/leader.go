package state

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Leadership is held by one previewd process per instance at a time: a
// PostgreSQL session-level advisory lock on a connection taken out of the
// pool for as long as the process leads. A process that dies, or loses its
// connection, releases the lock with its session, so a standby takes over
// within one retry interval.
//
// A leader that is frozen or cut off keeps its session (the kernel of a
// stopped process still answers TCP keepalives), so the lock alone would
// hold for hours. The leader therefore renews a lease (leader_leases)
// every check interval, and steps down by itself once it has not
// confirmed its session for LeaseDuration; a standby that finds the lease
// older than LeaseDuration ends the holder's session and takes over: a
// standby acts within LeaseDuration plus two retry intervals.
//
// Why PostgreSQL and not a Kubernetes Lease: the database is already a
// hard dependency (nothing can be done without it), the lock goes the
// moment the leader's session ends instead of after a lease duration, and
// it needs no extra RBAC. A leader that cannot reach PostgreSQL could not
// record anything either, so it must stop acting, which Lost tells it.
type Leadership struct {
	conn     *pgxpool.Conn
	key      int64
	instance string
	// confirmed is when the session and the lock were last confirmed.
	confirmed time.Time
	lost      chan struct{}
	stop      chan struct{}
	done      chan struct{} // closed when watch has returned: conn is ours again
	err       error
}

// LeaseDuration is how long a leader's lease lasts without renewal.
const LeaseDuration = 10 * time.Second

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
	l := &Leadership{conn: conn, key: key, instance: instance, confirmed: time.Now(),
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	if err := l.renew(ctx); err != nil {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key)
		conn.Release()
		return nil, fmt.Errorf("writing the leader lease: %w", err)
	}
	if check <= 0 {
		check = 2 * time.Second
	}
	go l.watch(check)
	return l, nil
}

// renew records the lease on the lock's own session.
func (l *Leadership) renew(ctx context.Context) error {
	_, err := l.conn.Exec(ctx, `INSERT INTO leader_leases (instance, pid, renewed_at) VALUES ($1, pg_backend_pid(), now())
		ON CONFLICT (instance) DO UPDATE SET pid = excluded.pid, renewed_at = excluded.renewed_at`, l.instance)
	return err
}

// BreakExpiredLease ends the session of instance's leader if its lease
// expired (LeaseDuration without renewal) while it still holds the lock:
// the leader is frozen or cut off. It reports the pid ended and the age
// of the lease; pid 0 when nothing was done.
func (s *Store) BreakExpiredLease(ctx context.Context, instance string) (pid int, age time.Duration, err error) {
	var secs float64
	err = s.pool.QueryRow(ctx, `SELECT l.pid, extract(epoch FROM now() - l.renewed_at)::float8 FROM leader_leases l
		WHERE l.instance = $1 AND l.renewed_at < now() - make_interval(secs => $2)
		AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = l.pid
			AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $3)`,
		instance, LeaseDuration.Seconds(), leaderKey(instance)).Scan(&pid, &secs)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading the leader lease: %w", err)
	}
	var ended bool
	if err := s.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ended); err != nil {
		return 0, 0, fmt.Errorf("ending the session of a leader whose lease expired: %w", err)
	}
	if !ended {
		return 0, 0, nil
	}
	return pid, time.Duration(secs * float64(time.Second)), nil
}

// Lead blocks until this process is the leader (retrying every interval)
// or ctx ends. While another process leads, it ends that leader's session
// once its lease has expired (logged on log, which may be nil).
func (s *Store) Lead(ctx context.Context, instance string, interval time.Duration, log *slog.Logger) (*Leadership, error) {
	for {
		l, err := s.TryLead(ctx, instance, interval)
		if err == nil {
			return l, nil
		}
		if errors.Is(err, ErrNotLeader) {
			pid, age, berr := s.BreakExpiredLease(ctx, instance)
			switch {
			case berr != nil && log != nil && ctx.Err() == nil:
				log.Warn("cannot check the leader's lease", "err", berr)
			case pid != 0 && log != nil:
				log.Warn("the leader has not renewed its lease: ended its PostgreSQL session to take over",
					"leader_pid", pid, "lease_age", age.Round(time.Millisecond), "lease", LeaseDuration)
			}
			if pid != 0 {
				// The lock is free once that backend has exited.
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
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
			// A process resumed after a freeze acts on nothing it has not
			// confirmed: past the lease, a standby may lead already.
			if since := time.Since(l.confirmed); since > LeaseDuration {
				l.err = fmt.Errorf("leadership lost: the session was not confirmed for %s (longer than the %s lease)", since.Round(time.Millisecond), LeaseDuration)
				close(l.lost)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), every)
			var held bool
			err := l.conn.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory'
				AND pid = pg_backend_pid() AND granted AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1`, l.key).Scan(&held)
			if err == nil && !held {
				err = errors.New("the advisory lock is no longer held")
			}
			if err == nil {
				err = l.renew(ctx)
			}
			cancel()
			if err == nil {
				l.confirmed = time.Now()
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
