package dataplane

import (
	"errors"
	"strings"
)

var errBadPath = errors.New("path_normalization_failed")

// hasEscapedSlash reports whether a path holds %2F or %5C in either case,
// which path_with_escaped_slashes_action REJECT_REQUEST refuses (Envoy's
// HttpConnectionManager path_with_escaped_slashes_action).
func hasEscapedSlash(path string) bool {
	for i := 0; i+2 < len(path); i++ {
		if path[i] == '%' && ((path[i+1] == '2' && (path[i+2] == 'f' || path[i+2] == 'F')) ||
			(path[i+1] == '5' && (path[i+2] == 'c' || path[i+2] == 'C'))) {
			return true
		}
	}
	return false
}

// normalizePath follows RFC 3986 section 6 as Envoy's normalize_path does:
// percent-encoded unreserved characters are decoded, remaining escapes are
// upper-cased, backslashes become slashes, and dot segments are removed
// (never above the root). The query is left untouched.
func normalizePath(p string) (string, error) {
	if p == "" || p[0] != '/' {
		return "", errBadPath
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", errBadPath
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			if isUnreserved(v) {
				b.WriteByte(v)
			} else {
				b.WriteByte('%')
				b.WriteByte(upper(p[i+1]))
				b.WriteByte(upper(p[i+2]))
			}
			i += 2
		case c == '\\':
			b.WriteByte('/')
		case c < 0x21 || c == 0x7f:
			return "", errBadPath
		default:
			b.WriteByte(c)
		}
	}
	return removeDotSegments(b.String()), nil
}

func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

// mergeSlashes collapses runs of slashes in a path (merge_slashes).
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func upper(c byte) byte {
	if c >= 'a' && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
