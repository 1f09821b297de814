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

// normalizePath is Envoy's normalize_path: the path (the query is left to
// the caller) canonicalised as Chromium's URL canonicaliser does, which Envoy
// carries (source/common/chromium_url, url_canon_path.cc DoPartialPath):
// escaped unreserved characters are decoded, other escapes are kept as sent
// (case included), invalid escapes pass unchanged (unless decoding around
// them would make a new escape: then the '%' becomes %25), the characters
// "<>^`{|} and controls are escaped, backslashes become slashes, and dot
// segments (also as %2e) are resolved, never above the root. A NUL, or %00,
// fails.
func normalizePath(p string) (string, error) {
	if p == "" || p[0] != '/' {
		return "", errBadPath
	}
	out := make([]byte, 0, len(p)+8)
	ok := true
	lastInvalidPercent := -1 << 30
	for i := 0; i < len(p); i++ {
		c := p[i]
		flags := pathCharFlags[c]
		if flags&pathSpecial == 0 {
			out = append(out, c)
			continue
		}
		if dot := isDot(p, i); dot > 0 {
			if len(out) > 0 && out[len(out)-1] == '/' {
				consumed, kind := classifyAfterDot(p, i+dot)
				switch kind {
				case dotNotDirectory:
					out = append(out, '.')
					i += dot - 1
				case dotCurrent:
					i += dot + consumed - 1
				case dotUp:
					out = backUpToPreviousSlash(out)
					i += dot + consumed - 1
				}
			} else {
				out = append(out, '.')
				i += dot - 1
			}
			continue
		}
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			if i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
				v := unhex(p[i+1])<<4 | unhex(p[i+2])
				vf := pathCharFlags[v]
				if vf&pathUnescape != 0 {
					out = append(out, v)
					if lastInvalidPercent >= len(out)-3 {
						out = checkForNestedEscapes(p, i+3, lastInvalidPercent, out)
					}
				} else {
					out = append(out, '%', p[i+1], p[i+2])
					if vf&pathInvalidBit != 0 {
						ok = false
					}
				}
				i += 2
			} else {
				lastInvalidPercent = len(out)
				out = append(out, '%')
			}
		case flags&pathInvalidBit != 0:
			out = appendEscaped(out, c)
			ok = false
		case flags&pathEscapeBit != 0:
			out = appendEscaped(out, c)
		}
	}
	if !ok {
		return "", errBadPath
	}
	return string(out), nil
}

// Character classes of Chromium's kPathCharLookup.
const (
	pathSpecial    = 1
	pathEscapeBit  = 2
	pathUnescape   = 4
	pathInvalidBit = 8
	pathEscape     = pathEscapeBit | pathSpecial
	pathInvalid    = pathInvalidBit | pathSpecial
)

var pathCharFlags = func() (t [256]byte) {
	for c := 0; c < 256; c++ {
		switch {
		case c == 0:
			t[c] = pathInvalid
		case c < 0x20 || c >= 0x7f:
			t[c] = pathEscape
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '~':
			t[c] = pathUnescape
		case c == '.':
			t[c] = pathSpecial
		case strings.IndexByte(" \"#%<>?\\^`{|}", byte(c)) >= 0:
			t[c] = pathEscape
		}
	}
	return t
}()

// isDot reports the length of a dot at p[i]: "." or "%2e" (either case).
func isDot(p string, i int) int {
	if p[i] == '.' {
		return 1
	}
	if p[i] == '%' && i+3 <= len(p) && p[i+1] == '2' && (p[i+2] == 'e' || p[i+2] == 'E') {
		return 3
	}
	return 0
}

const (
	dotNotDirectory = iota
	dotCurrent
	dotUp
)

// classifyAfterDot says what a dot that follows a slash is, from what comes
// after it, and how much of that it consumes.
func classifyAfterDot(p string, after int) (consumed, kind int) {
	if after == len(p) {
		return 0, dotCurrent
	}
	if p[after] == '/' || p[after] == '\\' {
		return 1, dotCurrent
	}
	if second := isDot(p, after); second > 0 {
		next := after + second
		if next == len(p) {
			return second, dotUp
		}
		if p[next] == '/' || p[next] == '\\' {
			return second + 1, dotUp
		}
	}
	return 0, dotNotDirectory
}

// backUpToPreviousSlash drops the last segment of out, which ends with a
// slash, never going above the first.
func backUpToPreviousSlash(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	i--
	for out[i] != '/' && i > 0 {
		i--
	}
	return out[:i+1]
}

// checkForNestedEscapes turns an invalid '%' into "%25" when what was
// decoded after it would make it a valid escape (so "%%30%30" cannot become
// "%00" on a second pass).
func checkForNestedEscapes(p string, next, lastInvalid int, out []byte) []byte {
	length := len(out)
	last := out[length-1]
	appendNext := lastInvalid == length-2
	if appendNext {
		if next == len(p) || p[next] >= 0x80 {
			return out
		}
		out = append(out, p[next])
	}
	if lastInvalid+2 < len(out) && isHex(out[lastInvalid+1]) && isHex(out[lastInvalid+2]) {
		if !appendNext {
			out = append(out, out[lastInvalid+1])
		}
		out[lastInvalid+1], out[lastInvalid+2] = '2', '5'
		return append(out, last)
	}
	if appendNext {
		out = out[:length]
	}
	return out
}

func appendEscaped(out []byte, c byte) []byte {
	const hex = "0123456789ABCDEF"
	return append(out, '%', hex[c>>4], hex[c&15])
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
