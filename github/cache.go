package github

import (
	"container/list"
	"sync"

	"github.com/gregjones/httpcache"
)

// LRUCache is an httpcache.Cache in memory, bounded by the total size of its
// keys and values; the least recently used entries go first. httpcache's own
// MemoryCache is an unbounded map, and a page of 100 pull requests is about
// 2 MB. It is safe for concurrent use.
type LRUCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List // front: most recently used
	items map[string]*list.Element
}

type lruEntry struct {
	key string
	val []byte
}

var _ httpcache.Cache = (*LRUCache)(nil)

// NewLRUCache returns a cache holding at most maxBytes; DefaultCacheBytes
// when maxBytes <= 0.
func NewLRUCache(maxBytes int64) *LRUCache {
	if maxBytes <= 0 {
		maxBytes = DefaultCacheBytes
	}
	return &LRUCache{max: maxBytes, ll: list.New(), items: map[string]*list.Element{}}
}

// Get returns the entry of key.
func (c *LRUCache) Get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*lruEntry).val, true
}

// Set stores val under key, evicting old entries to make room. A value
// larger than the whole cache is not stored.
func (c *LRUCache) Set(key string, val []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.remove(key)
	n := int64(len(key) + len(val))
	if n > c.max {
		return
	}
	c.items[key] = c.ll.PushFront(&lruEntry{key: key, val: val})
	c.size += n
	for c.size > c.max {
		c.remove(c.ll.Back().Value.(*lruEntry).key)
	}
}

// Delete removes key.
func (c *LRUCache) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.remove(key)
}

func (c *LRUCache) remove(key string) {
	e, ok := c.items[key]
	if !ok {
		return
	}
	en := e.Value.(*lruEntry)
	c.size -= int64(len(en.key) + len(en.val))
	c.ll.Remove(e)
	delete(c.items, key)
}

// Len is the number of entries.
func (c *LRUCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Bytes is the total size of the entries.
func (c *LRUCache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// prefixCache namespaces the keys of a shared cache by credential: GitHub's
// answers depend on who asks, and a cache above the authentication could
// otherwise serve one token's or installation's data to another.
type prefixCache struct {
	prefix string
	c      httpcache.Cache
}

func (p prefixCache) Get(key string) ([]byte, bool) { return p.c.Get(p.prefix + key) }
func (p prefixCache) Set(key string, val []byte)    { p.c.Set(p.prefix+key, val) }
func (p prefixCache) Delete(key string)             { p.c.Delete(p.prefix + key) }
