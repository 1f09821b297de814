package engine

import "encoding/binary"

// SWAR ("SIMD within a register"): the scan loops look at eight bytes at a
// time in a uint64, without a branch per byte, to skip the bytes that
// cannot start a value. Go's wasm output pays for every branch (a jump is
// a br_table dispatch), so a branch-free test of eight bytes is worth
// tens of per-byte tests under wazero; natively it helps too. Each mask
// below has the high bit of byte k set when byte k matches, exactly (no
// carries cross bytes), so the lowest set bit is the first match.

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// load8 reads the eight bytes at b[i:] as a little-endian word.
func load8(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

// eqMask marks the bytes of x equal to c.
func eqMask(x uint64, c byte) uint64 {
	v := x ^ (lo8 * uint64(c))
	return ^(((v &^ hi8) + 0x7f*lo8) | v) & hi8
}

// digitMask marks the ASCII digits of x.
func digitMask(x uint64) uint64 {
	t := x &^ hi8
	return (t + 0x50*lo8) &^ (t + 0x46*lo8) &^ x & hi8
}

// ctrlMask marks the bytes of x below 0x20.
func ctrlMask(x uint64) uint64 {
	t := x &^ hi8
	return ^(t + 0x60*lo8) &^ x & hi8
}

// bearerSpaces marks the spaces of x that may end a "Bearer" (the only
// value a space starts): those after "er", in either case, and those in
// x's first two bytes, whose bytes before are in the previous word. A
// space in prose ("the last statement") is not a candidate.
func bearerSpaces(x uint64) uint64 {
	// l is x in lower case (and NUL as a space: a control byte, a
	// candidate anyway). Byte k of v is zero when l has 'e', 'r', ' ' at
	// k-2, k-1, k; the bytes shifted in below x's first are taken to
	// match.
	l := x | 0x20*lo8
	v := (l ^ 0x20*lo8) | ((l<<8 | 'r') ^ 'r'*lo8) | ((l<<16 | 'e'<<8 | 'e') ^ 'e'*lo8)
	return ^(((v &^ hi8) + 0x7f*lo8) | v) & hi8
}

// pemDashes marks the dashes of x that may start "-----BEGIN" (the only
// value a dash starts): those followed by a dash, and x's last byte, whose
// next byte is in the next word. A date's or an SSN's dash is not.
func pemDashes(x uint64) uint64 {
	d := eqMask(x, '-')
	return d & (d>>8 | 0x80<<56)
}

// firstByte is the index of the first marked byte of a non-zero mask.
func firstByte(mask uint64) int {
	// the marks are high bits: isolate the lowest and count the bytes below it
	low := mask & -mask
	return int((low>>7)*0x0001020304050607>>56) & 7
}

// prefilter holds a profile's trigger classes as all-ones or all-zeros
// words, so candidates tests every class without a branch.
type prefilter struct {
	digit, lead, at, eq, dash, space, ctrl uint64
	trig                                   uint8
}

func onIf(b bool) uint64 {
	if b {
		return ^uint64(0)
	}
	return 0
}

func newPrefilter(trig uint8) prefilter {
	return prefilter{
		digit: onIf(trig&clDigit != 0), lead: onIf(trig&clLead != 0), at: onIf(trig&clAt != 0),
		eq: onIf(trig&clEq != 0), dash: onIf(trig&clDash != 0), space: onIf(trig&clSpace != 0),
		ctrl: onIf(trig&clCtrl != 0), trig: trig,
	}
}

// candidates marks the bytes of x that may start a value under the
// trigger classes: every byte of those classes, except the spaces and
// dashes that cannot start one (bearerSpaces, pemDashes); the scan loop
// checks each marked byte with cls. The loops below repeat its expression, as
// it is too large for the compiler to inline and a call per word costs as
// much as the test.
func (f *prefilter) candidates(x uint64) uint64 {
	t := x &^ hi8
	return (t+0x50*lo8)&^(t+0x46*lo8)&^x&hi8&f.digit |
		(eqMask(x, '+')|eqMask(x, '('))&f.lead |
		eqMask(x, '@')&f.at |
		eqMask(x, '=')&f.eq |
		pemDashes(x)&f.dash |
		bearerSpaces(x)&f.space |
		(^(t+0x60*lo8)&^x&hi8|eqMask(x, 0x7f))&f.ctrl
}

// skip returns the index of the first byte at or after t[i] that may
// start a value, or a position within 8 bytes of the end of t (the caller
// goes on byte by byte).
func (f *prefilter) skip(t []byte, i int) int {
	// the classes in locals: the loop reads no memory but t
	digit, lead, at, eq, dash, space, ctrl := f.digit, f.lead, f.at, f.eq, f.dash, f.space, f.ctrl
	for i+8 <= len(t) {
		x := load8(t, i)
		v := x &^ hi8
		c := (v+0x50*lo8)&^(v+0x46*lo8)&^x&hi8&digit |
			(eqMask(x, '+')|eqMask(x, '('))&lead |
			eqMask(x, '@')&at |
			eqMask(x, '=')&eq |
			pemDashes(x)&dash |
			bearerSpaces(x)&space |
			(^(v+0x60*lo8)&^x&hi8|eqMask(x, 0x7f))&ctrl
		if c != 0 {
			return i + firstByte(c)
		}
		i += 8
	}
	return i
}

// stringStops marks the bytes that end a JSON string's raw run: '"',
// '\\' and control bytes.
func stringStops(x uint64) uint64 {
	return eqMask(x, '"') | eqMask(x, '\\') | ctrlMask(x)
}
