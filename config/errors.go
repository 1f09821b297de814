package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one problem found in a configuration file.
type Error struct {
	// Path is the key path of the offending value, such as
	// connections[1].upstream or masking.profiles.cards-only.entities[0];
	// empty for problems with the file as a whole.
	Path string
	// Line is the 1-based line of the file, or 0 when unknown.
	Line int
	// Msg describes the problem.
	Msg string
	// More is set only in the last Error of a list cut at [MaxErrors]: how
	// many further problems were found and not listed. Msg then says so,
	// and Path and Line are empty.
	More int
}

// Error formats e as "PATH (line N): MSG", leaving out the parts that are
// empty or zero.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		if e.Path != "" {
			b.WriteString(" (line ")
			b.WriteString(strconv.Itoa(e.Line))
			b.WriteString(")")
		} else {
			b.WriteString("line ")
			b.WriteString(strconv.Itoa(e.Line))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a configuration file, sorted by line and
// then path. [Parse] and [Load] return it, as an error, whenever it is not
// empty; retrieve it with errors.As. When more than [MaxErrors] problems are
// found, it holds the first MaxErrors and then one Error whose More field
// counts the rest ("and 12 more errors").
type Errors []*Error

// Count returns the number of problems found: those listed and those a cut
// list leaves out.
func (es Errors) Count() int {
	n := len(es)
	if n > 0 && es[n-1].More > 0 {
		n += es[n-1].More - 1
	}
	return n
}

// Error formats each problem on its own line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, so that errors.As can also
// retrieve the first *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sort orders es by line, then path, keeping the discovery order otherwise.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Path, b.Path))
	})
}

// tracker records, while a file is decoded and validated, the problems found,
// the line of each key path, each path's parent, and the paths whose value
// could not be decoded (so that validation does not report them again).
type tracker struct {
	// errs holds the first problems by line and path, at most 2*MaxErrors;
	// found counts them all.
	errs   Errors
	found  int
	lines  map[string]int
	parent map[string]string
	bad    map[string]bool
}

func newTracker() *tracker {
	return &tracker{
		lines:  map[string]int{},
		parent: map[string]string{},
		bad:    map[string]bool{},
	}
}

// add records a problem at path and line. Only the first MaxErrors by line
// and path are kept, so that a file with a problem in every value costs no
// more memory than one with MaxErrors problems.
func (t *tracker) add(path string, line int, msg string) {
	t.found++
	t.errs = append(t.errs, &Error{Path: path, Line: line, Msg: msg})
	if len(t.errs) == 2*MaxErrors {
		// The sort is stable and the kept problems precede the new
		// ones, so problems on the same line and path stay in the
		// order found.
		t.errs.sort()
		clear(t.errs[MaxErrors:])
		t.errs = t.errs[:MaxErrors]
	}
}

// result returns the problems recorded, sorted and cut at MaxErrors, or nil.
func (t *tracker) result() Errors {
	if t.found == 0 {
		return nil
	}
	t.errs.sort()
	if t.found <= MaxErrors {
		return t.errs
	}
	more := t.found - MaxErrors
	noun := "errors"
	if more == 1 {
		noun = "error"
	}
	return append(t.errs[:MaxErrors:MaxErrors], &Error{
		Msg:  fmt.Sprintf("and %d more %s (only the first %d are listed)", more, noun, MaxErrors),
		More: more,
	})
}

// child returns the path of key under parent: parent.key, or parent["key"]
// when key is not a plain word or is cut (longer than maxShown bytes).
func (t *tracker) child(parent, key string) string {
	var p string
	switch {
	case plainKey(key) && len(key) <= maxShown && parent == "":
		p = key
	case plainKey(key) && len(key) <= maxShown:
		p = parent + "." + key
	default:
		p = parent + "[" + quote(key) + "]"
	}
	t.link(p, parent)
	return p
}

// elem returns the path of element i of the list at parent.
func (t *tracker) elem(parent string, i int) string {
	p := parent + "[" + strconv.Itoa(i) + "]"
	t.link(p, parent)
	return p
}

func (t *tracker) link(p, parent string) {
	if _, ok := t.parent[p]; !ok {
		t.parent[p] = parent
	}
}

// line returns the line of path, or of its nearest ancestor with a known
// line, or 0.
func (t *tracker) line(path string) int {
	for p := path; ; {
		if l, ok := t.lines[p]; ok {
			return l
		}
		parent, ok := t.parent[p]
		if !ok || p == "" {
			return 0
		}
		p = parent
	}
}

// skip reports whether path or one of its ancestors could not be decoded.
func (t *tracker) skip(path string) bool {
	for p := path; ; {
		if t.bad[p] {
			return true
		}
		parent, ok := t.parent[p]
		if !ok || p == "" {
			return false
		}
		p = parent
	}
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// secretKey reports whether the last key of path names a value that may be
// secret, whose content must never appear in a message. A key cut in the
// path (ending in "…") may have been one.
func secretKey(path string) bool {
	last := path
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		last = path[i+1:]
	}
	last = strings.ToLower(strings.TrimRight(last, "]\""))
	if strings.HasSuffix(last, "…") {
		return true
	}
	if strings.HasSuffix(last, "_file") || strings.HasSuffix(last, "_env") {
		return true
	}
	for _, w := range []string{"secret", "password", "passwd", "credential", "private"} {
		if strings.Contains(last, w) {
			return true
		}
	}
	return false
}

// suggest returns the candidate closest to s within edit distance 2, or "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	lower := strings.ToLower(s)
	n := utf8.RuneCountInString(lower)
	for _, c := range candidates {
		// Lengths more than 2 apart are more than 2 edits apart; skipping
		// them keeps a long value from costing len(s)*len(c) memory.
		if d := n - utf8.RuneCountInString(c); d > 2 || d < -2 {
			continue
		}
		if d := editDistance(lower, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and adjacent transpositions.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
