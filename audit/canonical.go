package audit

import (
	"fmt"
	"sort"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// The event encoder writes canonical JSON as RFC 8785 (JCS) defines it for
// the values events hold (strings, integers, booleans, arrays, objects):
// object keys sorted by their UTF-16 code units, no insignificant whitespace,
// strings escaped minimally, invalid UTF-8 replaced by U+FFFD. The same event
// always gives the same bytes, so its leaf hash is reproducible by anyone who
// re-encodes it, in any language with a JCS library.

// object is a JSON object under construction; its keys are sorted when it is
// written.
type object []member

type member struct {
	key string
	val any // string, int64, bool, []string, object, []object, hole
}

// hole marks where the log writes the event's index: the rest of the event is
// encoded by the appender, off the commit path, and only the index is spliced
// in once the order is known.
type hole struct{}

func (o *object) add(key string, val any) { *o = append(*o, member{key, val}) }

// str adds key only when s is not empty.
func (o *object) str(key, s string) {
	if s != "" {
		o.add(key, s)
	}
}

// encode appends o to b. If o holds a hole, holeAt is set to its offset in
// the result.
func (o object) encode(b []byte, holeAt *int) []byte {
	less := func(i, j int) bool { return lessUTF16(o[i].key, o[j].key) }
	// Event builders add keys in order; sort only what is not (maps).
	if !sort.SliceIsSorted(o, less) {
		sort.Slice(o, less)
	}
	b = append(b, '{')
	for i, m := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, m.key)
		b = append(b, ':')
		b = appendValue(b, m.val, holeAt)
	}
	return append(b, '}')
}

func appendValue(b []byte, v any, holeAt *int) []byte {
	switch v := v.(type) {
	case string:
		return appendString(b, v)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case bool:
		return strconv.AppendBool(b, v)
	case []string:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		return append(b, ']')
	case object:
		return v.encode(b, holeAt)
	case []object:
		b = append(b, '[')
		for i, o := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = o.encode(b, holeAt)
		}
		return append(b, ']')
	case hole:
		if holeAt != nil {
			*holeAt = len(b)
		}
		return b
	}
	panic(fmt.Sprintf("audit: cannot encode %T", v))
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JCS string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c >= 0x20:
				b = append(b, c)
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c == '\r':
				b = append(b, '\\', 'r')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// lessUTF16 orders keys by UTF-16 code units, as JCS does.
func lessUTF16(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < utf8.RuneSelf && b[i] < utf8.RuneSelf {
				return a[i] < b[i]
			}
			for i > 0 && !utf8.RuneStart(a[i]) {
				i--
			}
			ua, ub := utf16.Encode([]rune(a[i:])), utf16.Encode([]rune(b[i:]))
			for k := 0; k < len(ua) && k < len(ub); k++ {
				if ua[k] != ub[k] {
					return ua[k] < ub[k]
				}
			}
			return len(ua) < len(ub)
		}
	}
	return len(a) < len(b)
}
