package state

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// HTTPCacheOptions configure Store.HTTPCache.
type HTTPCacheOptions struct {
	// Prefix is put before every key. ETags and bodies belong to one
	// credential: give each GitHub App installation or token its own prefix.
	Prefix string
	// MaxBytes bounds the total size of the cached responses in the table
	// (all prefixes together); the least recently written are evicted
	// first. A response larger than MaxBytes is not stored. Default 64 MiB.
	MaxBytes int64
	// Timeout bounds each call. Default 5s.
	Timeout time.Duration
	// OnError, if set, is told about each failed call. httpcache.Cache has
	// no way to return errors: a failed Get is a miss, a failed Set or
	// Delete is dropped.
	OnError func(op string, err error)
}

// DefaultHTTPCacheMaxBytes is the default of HTTPCacheOptions.MaxBytes.
const DefaultHTTPCacheMaxBytes = 64 << 20

// HTTPCache implements github.com/gregjones/httpcache's Cache interface on
// the http_cache table, so that a restarted previewd revalidates with the
// ETags it had instead of paying a full response per URL.
type HTTPCache struct {
	ctx  context.Context
	pool *pgxpool.Pool
	opts HTTPCacheOptions

	// One eviction at a time: it scans the whole table, and a burst of
	// Sets (a thousand new previews' comments) running one each took every
	// connection of the pool until they timed out. A Set during an
	// eviction marks the table dirty; the running eviction goes again.
	evictMu  sync.Mutex
	evicting bool
	dirty    bool
}

// HTTPCache returns a cache backed by the store. Every call runs under ctx
// (cancel it at shutdown) and the per-call timeout.
func (s *Store) HTTPCache(ctx context.Context, opts HTTPCacheOptions) *HTTPCache {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultHTTPCacheMaxBytes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	return &HTTPCache{ctx: ctx, pool: s.pool, opts: opts}
}

// Get returns the response cached under key.
func (c *HTTPCache) Get(key string) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	var value []byte
	err := c.pool.QueryRow(ctx, `SELECT value FROM http_cache WHERE key = $1`, c.opts.Prefix+key).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false
	}
	if err != nil {
		c.fail("get", err)
		return nil, false
	}
	return value, true
}

// Set stores a response under key, then evicts the least recently written
// responses beyond the size bound.
func (c *HTTPCache) Set(key string, value []byte) {
	if int64(len(value)) > c.opts.MaxBytes {
		c.Delete(key) // an older, smaller version would be stale
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	_, err := c.pool.Exec(ctx, `INSERT INTO http_cache (key, value, updated_at) VALUES ($1, $2, clock_timestamp())
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at`,
		c.opts.Prefix+key, value)
	if err != nil {
		c.fail("set", err)
		return
	}
	c.evict()
}

// evict keeps the newest responses whose sizes add up to at most MaxBytes.
// When no Set is running the bound holds; while Sets run, it may be
// exceeded by the responses written since the running eviction began.
func (c *HTTPCache) evict() {
	c.evictMu.Lock()
	if c.evicting {
		c.dirty = true
		c.evictMu.Unlock()
		return
	}
	c.evicting = true
	c.evictMu.Unlock()
	for {
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
		// octet_length of a bytea reads the size without detoasting.
		_, err := c.pool.Exec(ctx, `DELETE FROM http_cache WHERE key IN (
			SELECT key FROM (
				SELECT key, sum(octet_length(value)) OVER (ORDER BY updated_at DESC, key DESC) AS total
				FROM http_cache
			) newest_first WHERE total > $1)`, c.opts.MaxBytes)
		cancel()
		if err != nil {
			c.fail("evict", err)
		}
		c.evictMu.Lock()
		if !c.dirty {
			c.evicting = false
			c.evictMu.Unlock()
			return
		}
		c.dirty = false
		c.evictMu.Unlock()
	}
}

// Delete removes the response cached under key.
func (c *HTTPCache) Delete(key string) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	if _, err := c.pool.Exec(ctx, `DELETE FROM http_cache WHERE key = $1`, c.opts.Prefix+key); err != nil {
		c.fail("delete", err)
	}
}

func (c *HTTPCache) fail(op string, err error) {
	if c.opts.OnError != nil {
		c.opts.OnError(op, err)
	}
}
