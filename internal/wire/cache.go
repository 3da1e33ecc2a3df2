package wire

import (
	"sync"

	"github.com/gregjones/httpcache"
)

// readOnlyCache reads the persistent cache and keeps its own writes in
// memory, so `previewd plan` benefits from the warm cache (304s) without
// writing to PostgreSQL.
type readOnlyCache struct {
	under httpcache.Cache
	mu    sync.Mutex
	mem   map[string][]byte
	gone  map[string]bool
}

func newReadOnlyCache(under httpcache.Cache) *readOnlyCache {
	return &readOnlyCache{under: under, mem: map[string][]byte{}, gone: map[string]bool{}}
}

func (c *readOnlyCache) Get(key string) ([]byte, bool) {
	c.mu.Lock()
	if v, ok := c.mem[key]; ok {
		c.mu.Unlock()
		return v, true
	}
	gone := c.gone[key]
	c.mu.Unlock()
	if gone {
		return nil, false
	}
	return c.under.Get(key)
}

func (c *readOnlyCache) Set(key string, v []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mem[key] = v
	delete(c.gone, key)
}

func (c *readOnlyCache) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mem, key)
	c.gone[key] = true
}
