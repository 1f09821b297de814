package dataplane

import (
	"strings"
	"testing"
)

// FuzzNormalizePath: the path normaliser never panics on hostile input, and
// what it accepts is a fixed point (normalising again changes nothing), starts
// with "/", has no dot segments left, no backslash and no control byte, and
// keeps escaped slashes escaped (they are refused, not decoded into "/").
// It tests a Go function, so it has no "envoy" run;
// TestConnectionManagerPathNormalisation holds real Envoy to the same table
// of paths.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2E/etc", "/a\\b", "/a/./b/.", "/..", "/a%2fb", "/%zz", "/a//b",
		"/%41%7e%5C", "/caf%C3%A9", "/a/b/../../../c", "/\x00", "/.%2e/x", "/a?b=../c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		out, err := normalizePath(p)
		if err != nil {
			return
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("%q → %q does not start with /", p, out)
		}
		again, err := normalizePath(out)
		if err != nil || again != out {
			t.Fatalf("%q → %q → %q (%v): not a fixed point", p, out, again, err)
		}
		merged := mergeSlashes(out)
		for _, seg := range strings.Split(merged, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q → %q keeps a dot segment", p, out)
			}
		}
		if strings.ContainsAny(out, "\\\x00\x7f") {
			t.Fatalf("%q → %q keeps a backslash or control byte", p, out)
		}
		if hasEscapedSlash(p) != hasEscapedSlash(out) {
			t.Fatalf("%q → %q: an escaped slash appeared or disappeared", p, out)
		}
	})
}
