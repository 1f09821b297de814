// Package configtest holds configuration files that tests of several
// packages feed to Custos: hostile inputs that must be refused in bounded
// time and memory.
package configtest

import (
	"strings"
)

// Bomb sizes: the anchored list's length and the number of aliases to it.
const (
	BombHosts   = 2500
	BombAliases = 2500
)

// AliasBomb returns the configuration of issue 14 (about 35 KB): one
// connection, anchored, whose hosts list has BombHosts elements of the wrong
// type, then BombAliases-1 aliases to it. Expanded it is 6.25 million bad
// values, each an error; before the limits, `custos config validate` used
// 2.5 GB of memory on it.
func AliasBomb() []byte {
	var b strings.Builder
	b.WriteString("connections:\n  - &conn {name: bomb, upstream: 'http://127.0.0.1:1', hosts: [")
	for i := range BombHosts {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("10")
	}
	b.WriteString("]}\n")
	for range BombAliases - 1 {
		b.WriteString("  - *conn\n")
	}
	return []byte(b.String())
}
