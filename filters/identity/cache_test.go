package identity

import (
	"testing"
	"time"
)

func TestTokenCacheIsBoundedAndNeverStale(t *testing.T) {
	is := &issuer{keys: &keySet{f: &fetcher{}}}
	now := time.Now()
	entry := func(b byte) *cached {
		return &cached{key: [32]byte{b}, p: Principal{Subject: string(rune('a' + b))}, exp: now.Add(time.Hour), iss: is}
	}
	c := newTokenCache(2)
	c.put(entry(1))
	c.put(entry(2))
	if p, ok := c.get([32]byte{1}, now); !ok || p.Subject != "b" {
		t.Fatalf("entry 1: %+v %v", p, ok)
	}
	c.put(entry(3)) // drops 2, the least recently used
	if _, ok := c.get([32]byte{2}, now); ok || c.len() != 2 {
		t.Fatalf("the least recently used entry was kept (%d entries)", c.len())
	}
	if _, ok := c.get([32]byte{3}, now.Add(time.Hour)); ok {
		t.Fatal("an entry was used at its token's exp")
	}
	is.keys.f.gen.Add(1)
	if _, ok := c.get([32]byte{1}, now); ok {
		t.Fatal("an entry was used after its issuer's key set changed")
	}
	if c.len() != 0 {
		t.Fatalf("%d stale entries kept", c.len())
	}
	off := newTokenCache(-1)
	off.put(entry(1))
	if off.len() != 0 {
		t.Fatal("a disabled cache remembered a token")
	}
}

func TestSessionNames(t *testing.T) {
	for _, tc := range []struct {
		claims map[string]any
		want   string
	}{
		{map[string]any{"sid": "s-1", "jti": "j-1", "iat": 1764100000.0}, "s-1"},
		{map[string]any{"jti": "j-1", "iat": 1764100000.0}, "j-1"},
		{map[string]any{"jti": "a b"}, hashed("jti", "a b")},
		{map[string]any{"iat": 1764100000.0}, hashed("iat", "iss", "sub", "1764100000")},
	} {
		if got := session("iss", "sub", tc.claims); got != tc.want || !ValidSessionName(got) {
			t.Errorf("%v: session %q, want %q", tc.claims, got, tc.want)
		}
	}
	if session("iss", "a", map[string]any{"iat": 1.0}) == session("iss", "b", map[string]any{"iat": 1.0}) {
		t.Error("two subjects derived the same session")
	}
}
