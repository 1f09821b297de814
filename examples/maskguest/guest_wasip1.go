//go:build wasip1

//lint:file-ignore U1000 the host calls these through //go:wasmexport

package main

import (
	"encoding/binary"
	"encoding/json"
	"unsafe"
)

type profile struct {
	minDigits int
	fault     string
	after     int
}

var (
	bufs     = map[uint32][]byte{}
	profiles []profile
	out      []byte
	state    [4]byte
	report   []byte
	result   [9]uint32
)

func addr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

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
func abiVersion() int32 { return 1 }

//go:wasmexport custos_alloc
func alloc(size int32) int32 {
	if size <= 0 {
		return 0
	}
	b := make([]byte, size)
	bufs[addr(b)] = b
	return int32(addr(b))
}

//go:wasmexport custos_free
func free(ptr int32) { delete(bufs, uint32(ptr)) }

//go:wasmexport custos_result
func resultAddr() int32 { return int32(uintptr(unsafe.Pointer(&result[0]))) }

//go:wasmexport custos_configure
func configure(ptr, n int32) int32 {
	b, ok := region(ptr, n)
	if !ok {
		return -6
	}
	var c struct {
		Custom struct {
			MinDigits int    `json:"min_digits"`
			Fault     string `json:"fault"`
			After     int    `json:"after"`
		} `json:"custom"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return -6
	}
	p := profile{minDigits: c.Custom.MinDigits, fault: c.Custom.Fault, after: c.Custom.After}
	if p.minDigits <= 0 {
		p.minDigits = 6
	}
	profiles = append(profiles, p)
	return int32(len(profiles))
}

//go:wasmexport custos_mask
func mask(h, format, flags, statePtr, stateLen, inPtr, inLen int32) int32 {
	if h < 1 || int(h) > len(profiles) {
		return -6
	}
	p := profiles[h-1]
	st, ok1 := region(statePtr, stateLen)
	in, ok2 := region(inPtr, inLen)
	if !ok1 || !ok2 {
		return -6
	}
	// the state is the number of calls so far in this body
	calls := uint32(0)
	if len(st) == 4 {
		calls = binary.LittleEndian.Uint32(st)
	}
	switch {
	case p.fault == "loop":
		//lint:ignore SA5002 a runaway module, on purpose
		for {
		}
	case p.fault == "trap" && int(calls) >= p.after:
		panic("maskguest: trap on purpose")
	}
	final := flags&1 != 0
	// hold back a run of digits at the end: it may go on in the next chunk
	end := len(in)
	if !final {
		for end > 0 && in[end-1] >= '0' && in[end-1] <= '9' {
			end--
		}
	}
	out = append(out[:0], in[:end]...)
	masked := 0
	for i := 0; i < end; {
		if out[i] < '0' || out[i] > '9' {
			i++
			continue
		}
		j := i
		for j < end && out[j] >= '0' && out[j] <= '9' {
			j++
		}
		if j-i >= p.minDigits {
			for k := i; k < j; k++ {
				out[k] = '9'
			}
			masked++
		}
		i = j
	}
	binary.LittleEndian.PutUint32(state[:], calls+1)
	report = report[:0]
	if masked > 0 {
		report = append(report, 'c', 6)
		report = append(report, "digits"...)
		report = append(report, 6)
		report = append(report, "redact"...)
		report = binary.AppendUvarint(report, uint64(masked))
	}
	result = [9]uint32{addr(out), uint32(len(out)), uint32(end), addr(state[:]), 4, addr(report), uint32(len(report))}
	return 0
}
