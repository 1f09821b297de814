// Package mask redacts sensitive values from response bodies on their way to
// the agent. Engine is the seam. WASM is the engine: the detectors of
// filters/mask/engine in a WebAssembly module (built in: their Rust port,
// filters/mask/rsguest, held byte for byte to their Go build,
// filters/mask/guest; or a replacement implementing docs/masking-abi.md)
// run by wazero, compiled once and pooled. Native runs the same detectors
// in-process. None refuses every profile, so a masked connection is never
// served unmasked.
package mask

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Profile is the masking that applies to one response: the union of the
// connection's profile and policy's.
type Profile struct {
	// Names are the profile names that make it up, sorted, without repeats.
	Names []string
}

// NewProfile is the union of the named profiles (empty names are skipped).
func NewProfile(names ...string) Profile {
	var p Profile
	for _, n := range names {
		if n != "" && !containsString(p.Names, n) {
			p.Names = append(p.Names, n)
		}
	}
	sort.Strings(p.Names)
	return p
}

// Empty reports whether p masks nothing.
func (p Profile) Empty() bool { return len(p.Names) == 0 }

// String is the profile's names joined with "+".
func (p Profile) String() string { return strings.Join(p.Names, "+") }

// Report counts what a stream masked, per entity type; never a value.
type Report map[string]int

// Stream masks one body, chunk by chunk.
type Stream interface {
	// Mask returns chunk with its sensitive values redacted; end marks the
	// last chunk. A value split across chunks is still found (the output
	// for a chunk may hold back its last bytes until the next). After an
	// error every call fails: the response must fail closed.
	Mask(chunk []byte, end bool) ([]byte, error)
	// Report returns the counts so far, per entity.
	Report() Report
	// Details returns the counts per entity and operator and the JSON
	// pointers of the masked values so far.
	Details() Details
	// Close releases the stream; a stream ended (end or error) is closed
	// already. Calling it again does nothing.
	Close()
}

// Engine opens masking streams.
type Engine interface {
	// Open starts masking one body under p. b's content type and encoding
	// say how it is read; one the engine cannot read is ErrUnreadable
	// unless every profile in p is best effort. An empty p passes through.
	Open(p Profile, b Body) (Stream, error)
}

// ErrNoEngine says masking was asked for and no engine can do it.
var ErrNoEngine = errors.New("no masking engine is configured")

// None masks nothing: it opens a pass-through stream for an empty profile
// and refuses any other.
type None struct{}

// Open returns a pass-through stream for an empty profile.
func (None) Open(p Profile, _ Body) (Stream, error) {
	if !p.Empty() {
		return nil, fmt.Errorf("masking profile %s: %w", p, ErrNoEngine)
	}
	return passThrough{}, nil
}

// Masks reports whether e can open streams for p without error, so a request
// that would be refused at its response is refused before it reaches the
// upstream.
func Masks(e Engine, p Profile) error {
	s, err := e.Open(p, Body{})
	if err != nil {
		return err
	}
	s.Close()
	return nil
}

type passThrough struct{}

func (passThrough) Mask(chunk []byte, _ bool) ([]byte, error) { return chunk, nil }
func (passThrough) Report() Report                            { return nil }
func (passThrough) Details() Details                          { return Details{} }
func (passThrough) Close()                                    {}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
