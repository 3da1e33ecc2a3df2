package state

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gregjones/httpcache"
)

var _ httpcache.Cache = (*HTTPCache)(nil)

func TestHTTPCacheRoundTrip(t *testing.T) {
	s, url := newStore(t)
	c := s.HTTPCache(t.Context(), HTTPCacheOptions{Prefix: "inst-1:"})
	if _, ok := c.Get("https://api.github.com/repos/a/b/pulls"); ok {
		t.Fatal("hit in an empty cache")
	}
	body := bytes.Repeat([]byte{0, 1, 2, 0xff}, 1000) // binary-safe
	c.Set("https://api.github.com/repos/a/b/pulls", body)
	if v, ok := c.Get("https://api.github.com/repos/a/b/pulls"); !ok || !bytes.Equal(v, body) {
		t.Fatalf("Get = %d bytes, %v", len(v), ok)
	}
	c.Set("https://api.github.com/repos/a/b/pulls", []byte("v2"))
	if v, _ := c.Get("https://api.github.com/repos/a/b/pulls"); string(v) != "v2" {
		t.Errorf("after overwrite: %q", v)
	}

	other := s.HTTPCache(t.Context(), HTTPCacheOptions{Prefix: "inst-2:"})
	if _, ok := other.Get("https://api.github.com/repos/a/b/pulls"); ok {
		t.Error("a cache with another prefix sees the entry")
	}

	// A restarted process starts warm.
	s2 := open(t, url)
	if v, ok := s2.HTTPCache(t.Context(), HTTPCacheOptions{Prefix: "inst-1:"}).Get("https://api.github.com/repos/a/b/pulls"); !ok || string(v) != "v2" {
		t.Errorf("new store: %q, %v", v, ok)
	}

	c.Delete("https://api.github.com/repos/a/b/pulls")
	if _, ok := c.Get("https://api.github.com/repos/a/b/pulls"); ok {
		t.Error("hit after Delete")
	}
	c.Delete("never-stored") // not an error
}

func TestHTTPCacheEviction(t *testing.T) {
	s, _ := newStore(t)
	var errs []string
	c := s.HTTPCache(t.Context(), HTTPCacheOptions{
		MaxBytes: 1000,
		OnError:  func(op string, err error) { errs = append(errs, op+": "+err.Error()) },
	})
	value := bytes.Repeat([]byte("x"), 300)
	for i := range 10 {
		c.Set(fmt.Sprint("k", i), value)
	}
	var n, total int64
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*), coalesce(sum(octet_length(value)), 0) FROM http_cache`).
		Scan(&n, &total); err != nil {
		t.Fatal(err)
	}
	if total > 1000 || n != 3 {
		t.Errorf("%d entries, %d bytes; want the 3 newest, at most 1000 bytes", n, total)
	}
	for i := range 10 {
		_, ok := c.Get(fmt.Sprint("k", i))
		if want := i >= 7; ok != want {
			t.Errorf("k%d cached = %v, want %v", i, ok, want)
		}
	}

	// Rewriting an old entry makes it the newest.
	c.Set("k7", value)
	c.Set("k10", value)
	if _, ok := c.Get("k7"); !ok {
		t.Error("k7 was evicted although just rewritten")
	}
	if _, ok := c.Get("k8"); ok {
		t.Error("k8, the oldest, survived")
	}

	// Too big to store: not stored, and an older version goes too.
	c.Set("k9", bytes.Repeat([]byte("y"), 1001))
	if _, ok := c.Get("k9"); ok {
		t.Error("an entry over MaxBytes was stored or kept")
	}
	if len(errs) != 0 {
		t.Errorf("errors: %v", errs)
	}
}

func TestHTTPCacheConcurrentSets(t *testing.T) {
	s, _ := newStore(t)
	var mu sync.Mutex
	var errs []string
	c := s.HTTPCache(t.Context(), HTTPCacheOptions{
		MaxBytes: 5000,
		OnError: func(op string, err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, op+": "+err.Error())
		},
	})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				c.Set(fmt.Sprint("w", w, "-", i%7), bytes.Repeat([]byte("z"), 400))
			}
		})
	}
	wg.Wait()
	var total int64
	if err := s.pool.QueryRow(t.Context(), `SELECT coalesce(sum(octet_length(value)), 0) FROM http_cache`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total > 5000 {
		t.Errorf("%d bytes cached, bound is 5000", total)
	}
	if len(errs) != 0 {
		t.Errorf("errors: %v", errs)
	}
}

func TestHTTPCacheErrorsAreMisses(t *testing.T) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	var ops []string
	c := s.HTTPCache(ctx, HTTPCacheOptions{Timeout: time.Second, OnError: func(op string, err error) { ops = append(ops, op) }})
	c.Set("k", []byte("v"))
	cancel() // shutdown
	if _, ok := c.Get("k"); ok {
		t.Error("hit with a cancelled context")
	}
	c.Set("k2", []byte("v"))
	c.Delete("k")
	if fmt.Sprint(ops) != "[get set delete]" {
		t.Errorf("OnError got %v, want [get set delete]", ops)
	}
}

// TestHTTPCacheRevalidationWritesNothing: a response stored again with the
// same body (httpcache after a 304) writes no row; Get returns it with the
// newer headers (its freshness); a new body is written.
func TestHTTPCacheRevalidationWritesNothing(t *testing.T) {
	s, url := newStore(t)
	c := s.HTTPCache(t.Context(), HTTPCacheOptions{})
	resp := func(date, body string) []byte {
		return []byte("HTTP/1.1 200 OK\r\nDate: " + date + "\r\nEtag: \"abc\"\r\nCache-Control: private, max-age=60\r\n\r\n" + body)
	}
	page := strings.Repeat(`{"number":1}`, 5000)
	c.Set("pulls", resp("Mon, 30 Nov 2026 10:00:00 GMT", page))
	writes := func() (n int64, xmin string) {
		if err := s.pool.QueryRow(t.Context(), `SELECT n_tup_ins + n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'http_cache'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if err := s.pool.QueryRow(t.Context(), `SELECT xmin::text FROM http_cache WHERE key = 'pulls'`).Scan(&xmin); err != nil {
			t.Fatal(err)
		}
		return n, xmin
	}
	_, before := writes()
	for i := range 10 { // ten idle cycles: each revalidates with a 304
		c.Set("pulls", resp(fmt.Sprintf("Mon, 30 Nov 2026 10:%02d:00 GMT", i+1), page))
	}
	if _, after := writes(); after != before {
		t.Errorf("revalidations rewrote the row (xmin %s → %s)", before, after)
	}
	got, ok := c.Get("pulls")
	if !ok || !bytes.Contains(got, []byte("Date: Mon, 30 Nov 2026 10:10:00 GMT")) || !bytes.HasSuffix(got, []byte(page)) {
		t.Errorf("Get after revalidation: %v, newer Date %v", ok, bytes.Contains(got, []byte("10:10:00")))
	}
	// A restarted process: the stored response, then revalidations write
	// nothing either.
	c2 := open(t, url).HTTPCache(t.Context(), HTTPCacheOptions{})
	if v, ok := c2.Get("pulls"); !ok || !bytes.Contains(v, []byte("10:00:00")) {
		t.Errorf("restarted Get: %v", ok)
	}
	c2.Set("pulls", resp("Mon, 30 Nov 2026 11:00:00 GMT", page))
	if _, after := writes(); after != before {
		t.Errorf("a revalidation after a restart rewrote the row")
	}
	// New content is written.
	c.Set("pulls", resp("Mon, 30 Nov 2026 12:00:00 GMT", page+"x"))
	if _, after := writes(); after == before {
		t.Error("a changed body was not written")
	}
}

// TestHTTPCacheEvictsInBatches: writes under the bound run no eviction; one
// that takes the table over it evicts down to 90% in one statement.
func TestHTTPCacheEvictsInBatches(t *testing.T) {
	s, _ := newStore(t)
	c := s.HTTPCache(t.Context(), HTTPCacheOptions{MaxBytes: 11000})
	value := bytes.Repeat([]byte("x"), 100)
	for i := range 100 {
		c.Set(fmt.Sprint("k", i), append([]byte(fmt.Sprint(i)), value...))
	}
	if c.evictions != 0 {
		t.Errorf("%d evictions for writes under the bound", c.evictions)
	}
	for i := 100; i < 110; i++ {
		c.Set(fmt.Sprint("k", i), append([]byte(fmt.Sprint(i)), value...))
	}
	var total int64
	if err := s.pool.QueryRow(t.Context(), `SELECT coalesce(sum(octet_length(value)), 0) FROM http_cache`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total > 11000 || c.evictions != 1 {
		t.Errorf("%d bytes after %d evictions; want ≤ 11000 in one eviction", total, c.evictions)
	}
	if _, ok := c.Get("k109"); !ok {
		t.Error("the newest entry was evicted")
	}
	if _, ok := c.Get("k0"); ok {
		t.Error("the oldest entry survived")
	}
}
