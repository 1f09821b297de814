//go:build wasip1

//lint:file-ignore U1000 the host calls these through //go:wasmexport

package main

import (
	"unsafe"

	"github.com/custos-dev/custos/filters/mask/calibrate"
)

// buf is where the host writes the bytes to scan.
var buf []byte

// calibrate_buf returns the address of a buffer of n bytes for the host
// to write into.
//
//go:wasmexport calibrate_buf
func calibrateBuf(n int32) int32 {
	if int(n) > cap(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if n == 0 {
		return 0
	}
	return int32(uintptr(unsafe.Pointer(&buf[0])))
}

// calibrate_scan scans the buffer's first n bytes and returns the cards
// it found.
//
//go:wasmexport calibrate_scan
func calibrateScan(n int32) int32 {
	return int32(calibrate.Cards(buf[:n]))
}
