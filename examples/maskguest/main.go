// Command maskguest is a custom masking module: the smallest guest that
// implements docs/masking-abi.md, to show how to replace Custos' built-in
// engine (masking.module). It masks every run of at least min_digits digits
// (default 6) by writing each digit as '9', which keeps JSON numbers and
// strings valid, and counts them as entity "digits".
//
// Its profile's "custom" object also makes it misbehave on purpose, so the
// host's tests can show a broken module fails that response closed:
//
//	{"custom": {"fault": "loop"}}             // never returns from mask
//	{"custom": {"fault": "trap", "after": 2}} // traps on the third mask call of a body
//
// Build it with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o maskguest.wasm ./examples/maskguest
//
// The exports are in guest_wasip1.go; elsewhere this is an empty program.
package main

func main() {}
