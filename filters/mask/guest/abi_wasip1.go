//go:build wasip1

//lint:file-ignore U1000 the host calls these through //go:wasmexport

package main

import (
	"errors"
	"unsafe"

	"github.com/custos-dev/custos/filters/mask/engine"
)

// abiVersion is the version of docs/masking-abi.md this module implements.
const abiVersion = 1

// Status codes custos_mask and custos_configure return (negative).
const (
	statusSyntax    = -1
	statusBinary    = -2
	statusTooLarge  = -3
	statusTruncated = -4
	statusState     = -5
	statusArgs      = -6
	statusInternal  = -7
)

var (
	// bufs holds the regions custos_alloc handed out, by address, so the
	// Go collector keeps them and the host's pointers are checked.
	bufs     = map[uint32][]byte{}
	profiles []*engine.Profile
	masker   = engine.NewMasker()
	report   []byte
	errMsg   []byte
	// result is what custos_result points at: out, out_len, consumed,
	// state, state_len, report, report_len, error, error_len.
	result [9]uint32
)

func addr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

// region is the len bytes at ptr, which must lie in a region custos_alloc
// handed out.
func region(ptr, n int32) ([]byte, bool) {
	if n == 0 {
		return nil, true
	}
	b, ok := bufs[uint32(ptr)]
	if !ok || n < 0 || int(n) > len(b) {
		return nil, false
	}
	return b[:n], true
}

//go:wasmexport custos_abi_version
func custosABIVersion() int32 { return abiVersion }

//go:wasmexport custos_alloc
func custosAlloc(size int32) int32 {
	if size <= 0 {
		return 0
	}
	b := make([]byte, size)
	p := addr(b)
	bufs[p] = b
	return int32(p)
}

//go:wasmexport custos_free
func custosFree(ptr int32) { delete(bufs, uint32(ptr)) }

//go:wasmexport custos_result
func custosResult() int32 { return int32(uintptr(unsafe.Pointer(&result[0]))) }

func fail(status int32, err error) int32 {
	result = [9]uint32{}
	errMsg = append(errMsg[:0], err.Error()...)
	result[7], result[8] = addr(errMsg), uint32(len(errMsg))
	return status
}

//go:wasmexport custos_configure
func custosConfigure(ptr, n int32) int32 {
	b, ok := region(ptr, n)
	if !ok {
		return fail(statusArgs, errors.New("configure: config is not in an allocated region"))
	}
	c, err := engine.ParseConfig(b)
	if err != nil {
		return fail(statusArgs, err)
	}
	p, err := engine.Compile(c)
	if err != nil {
		return fail(statusArgs, err)
	}
	profiles = append(profiles, p)
	result = [9]uint32{}
	return int32(len(profiles))
}

//go:wasmexport custos_mask
func custosMask(profile, format, flags, statePtr, stateLen, inPtr, inLen int32) int32 {
	if profile < 1 || int(profile) > len(profiles) || format < 0 || format > int32(engine.CSV) {
		return fail(statusArgs, errors.New("mask: unknown profile or format"))
	}
	state, ok1 := region(statePtr, stateLen)
	in, ok2 := region(inPtr, inLen)
	if !ok1 || !ok2 {
		return fail(statusArgs, errors.New("mask: input is not in an allocated region"))
	}
	p := profiles[profile-1]
	r, err := masker.Mask(p, engine.Format(format), state, in, flags&1 != 0)
	if err != nil {
		switch {
		case errors.Is(err, engine.ErrSyntax):
			return fail(statusSyntax, err)
		case errors.Is(err, engine.ErrBinary):
			return fail(statusBinary, err)
		case errors.Is(err, engine.ErrTooLarge), errors.Is(err, engine.ErrDepth):
			return fail(statusTooLarge, err)
		case errors.Is(err, engine.ErrTruncated):
			return fail(statusTruncated, err)
		case errors.Is(err, engine.ErrState):
			return fail(statusState, err)
		}
		return fail(statusInternal, err)
	}
	report = masker.AppendReport(report[:0], p)
	result = [9]uint32{
		addr(r.Out), uint32(len(r.Out)), uint32(r.Consumed),
		addr(r.State), uint32(len(r.State)),
		addr(report), uint32(len(report)),
	}
	return 0
}
