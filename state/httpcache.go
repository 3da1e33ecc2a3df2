package state

import (
	"bytes"
	"context"
	"crypto/sha256"
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
	// (all prefixes together); when a write takes the table over it, the
	// responses whose content changed least recently are evicted, in one
	// statement, down to 90% of it. A response larger than MaxBytes is not
	// stored. Default DefaultHTTPCacheMaxBytes.
	MaxBytes int64
	// Timeout bounds each call. Default 5s.
	Timeout time.Duration
	// OnError, if set, is told about each failed call. httpcache.Cache has
	// no way to return errors: a failed Get is a miss, a failed Set or
	// Delete is dropped.
	OnError func(op string, err error)
}

// DefaultHTTPCacheMaxBytes is the default of HTTPCacheOptions.MaxBytes:
// sized for thousands of open PRs (a page of 100 PRs is about 2 MB on
// GitHub: 5,000 PRs are 100 MB of list pages).
const DefaultHTTPCacheMaxBytes = 512 << 20

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

	// What this process knows of the stored responses: each one's size
	// and body digest, and, for a response revalidated (304) since it was
	// stored, its newer header block. A revalidation changes only the
	// headers (Date, freshness): it is kept here instead of rewriting the
	// row, and Get returns it with the stored body.
	mu      sync.Mutex
	entries map[string]*cacheEntry
	total   int64 // bytes in the table, as last counted plus this process's changes
	counted bool
	// evictions counts eviction statements (tests).
	evictions int
}

type cacheEntry struct {
	size int64
	body [sha256.Size]byte
	head []byte // newer header block, nil when the stored one is current
}

// splitResponse splits a dumped HTTP response into its header block
// (through the blank line) and its body; a value that is not one is all
// body.
func splitResponse(v []byte) (head, body []byte) {
	if i := bytes.Index(v, []byte("\r\n\r\n")); i >= 0 {
		return v[:i+4], v[i+4:]
	}
	return nil, v
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
	return &HTTPCache{ctx: ctx, pool: s.pool, opts: opts, entries: map[string]*cacheEntry{}}
}

// Get returns the response cached under key (with the header block of its
// latest revalidation).
func (c *HTTPCache) Get(key string) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	var value []byte
	err := c.pool.QueryRow(ctx, `SELECT value FROM http_cache WHERE key = $1`, c.opts.Prefix+key).Scan(&value)
	if errors.Is(err, pgx.ErrNoRows) {
		c.forget(key)
		return nil, false
	}
	if err != nil {
		c.fail("get", err)
		return nil, false
	}
	_, body := splitResponse(value)
	digest := sha256.Sum256(body)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || e.body != digest || e.size != int64(len(value)) {
		// Written by another process, or before this one started.
		if e != nil {
			c.total += int64(len(value)) - e.size
		}
		c.entries[key] = &cacheEntry{size: int64(len(value)), body: digest}
		return value, true
	}
	if e.head != nil {
		return append(append(make([]byte, 0, len(e.head)+len(body)), e.head...), body...), true
	}
	return value, true
}

// Set stores a response under key. A response whose body is the one
// stored (a revalidation: 304 Not Modified) writes nothing: its headers
// are kept in memory. A write that takes the table over MaxBytes evicts.
func (c *HTTPCache) Set(key string, value []byte) {
	if int64(len(value)) > c.opts.MaxBytes {
		c.Delete(key) // an older, smaller version would be stale
		return
	}
	head, body := splitResponse(value)
	digest := sha256.Sum256(body)
	c.mu.Lock()
	if e := c.entries[key]; e != nil && e.body == digest && head != nil {
		e.head = append(e.head[:0], head...)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	_, err := c.pool.Exec(ctx, `INSERT INTO http_cache (key, value, updated_at) VALUES ($1, $2, clock_timestamp())
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at`,
		c.opts.Prefix+key, value)
	if err != nil {
		// The stored row (if any) is unknown now: not its size.
		c.mu.Lock()
		delete(c.entries, key)
		c.mu.Unlock()
		c.fail("set", err)
		return
	}
	c.mu.Lock()
	old := int64(0)
	if e := c.entries[key]; e != nil {
		old = e.size
	}
	c.entries[key] = &cacheEntry{size: int64(len(value)), body: digest}
	c.total += int64(len(value)) - old
	over := !c.counted || c.total > c.opts.MaxBytes
	c.mu.Unlock()
	c.evictMu.Lock()
	if c.evicting {
		// The running eviction may have counted before this write: it
		// counts again.
		c.dirty = true
		c.evictMu.Unlock()
		return
	}
	c.evictMu.Unlock()
	if over {
		c.evict()
	}
}

func (c *HTTPCache) forget(key string) {
	c.mu.Lock()
	if e := c.entries[key]; e != nil {
		c.total -= e.size
		delete(c.entries, key)
	}
	c.mu.Unlock()
}

// evict counts the table's bytes and, when they are over MaxBytes, deletes
// the responses whose content changed least recently down to 90% of it,
// in one statement. One eviction runs at a time; a write during it makes
// it count again.
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
		c.evictOnce()
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

func (c *HTTPCache) evictOnce() {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	// octet_length of a bytea reads the size without detoasting.
	var total int64
	if err := c.pool.QueryRow(ctx, `SELECT coalesce(sum(octet_length(value)), 0) FROM http_cache`).Scan(&total); err != nil {
		c.fail("evict", err)
		return
	}
	if total > c.opts.MaxBytes {
		rows, err := c.pool.Query(ctx, `DELETE FROM http_cache WHERE key IN (
			SELECT key FROM (
				SELECT key, sum(octet_length(value)) OVER (ORDER BY updated_at DESC, key DESC) AS kept
				FROM http_cache
			) newest_first WHERE kept > $1)
			RETURNING key, octet_length(value)`, c.opts.MaxBytes*9/10)
		if err != nil {
			c.fail("evict", err)
			return
		}
		var (
			key  string
			size int64
		)
		_, err = pgx.ForEachRow(rows, []any{&key, &size}, func() error {
			total -= size
			if k, ok := bytes.CutPrefix([]byte(key), []byte(c.opts.Prefix)); ok {
				c.mu.Lock()
				delete(c.entries, string(k))
				c.mu.Unlock()
			}
			return nil
		})
		if err != nil {
			c.fail("evict", err)
		}
		c.mu.Lock()
		c.evictions++
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.total, c.counted = total, true
	c.mu.Unlock()
}

// Delete removes the response cached under key.
func (c *HTTPCache) Delete(key string) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	c.forget(key)
	if _, err := c.pool.Exec(ctx, `DELETE FROM http_cache WHERE key = $1`, c.opts.Prefix+key); err != nil {
		c.fail("delete", err)
	}
}

func (c *HTTPCache) fail(op string, err error) {
	if c.opts.OnError != nil {
		c.opts.OnError(op, err)
	}
}
