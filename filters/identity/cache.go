package identity

import (
	"container/list"
	"sync"
	"time"
)

// tokenCache remembers verified tokens by the SHA-256 of the token, so a
// token's verification is paid once: at most max entries, the least
// recently used dropped first, none used at or after its token's exp or
// once its issuer's key set changed.
type tokenCache struct {
	max int

	mu sync.Mutex
	ll list.List // of *cached, most recently used first
	m  map[[32]byte]*list.Element
}

type cached struct {
	key [32]byte
	p   Principal
	exp time.Time
	iss *issuer
	gen uint64 // the issuer's key set generation the token was verified under
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, m: make(map[[32]byte]*list.Element)}
}

// get returns the principal of the verified token whose hash is key.
func (c *tokenCache) get(key [32]byte, now time.Time) (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[key]
	if !ok {
		return Principal{}, false
	}
	e := el.Value.(*cached)
	if !now.Before(e.exp) || e.gen != e.iss.keys.f.gen.Load() {
		c.ll.Remove(el)
		delete(c.m, key)
		return Principal{}, false
	}
	c.ll.MoveToFront(el)
	return e.p, true
}

// put remembers e, dropping the least recently used entry when full.
func (c *tokenCache) put(e *cached) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[e.key]; ok {
		el.Value = e
		c.ll.MoveToFront(el)
		return
	}
	c.m[e.key] = c.ll.PushFront(e)
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.m, last.Value.(*cached).key)
	}
}

// len is the number of entries, expired ones included.
func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
