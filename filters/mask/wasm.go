package mask

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed" // the built-in module
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/custos-dev/custos/filters/mask/engine"
)

// BuiltinModule is the built-in masking module: filters/mask/rsguest, the
// engine of filters/mask/engine ported to Rust (built by `make wasm`), which
// TestBuiltinModuleMatchesGoEngine holds to the Go engine's module
// (filters/mask/guest) byte for byte: output, report and errors. The Go
// module is the reference; the Rust one runs several times faster under
// wazero.
//
//go:embed rsguest/custos-mask-rs.wasm
var BuiltinModule []byte

// ABIVersion is the version of docs/masking-abi.md the host speaks.
const ABIVersion = 1

// Defaults for Options.
const (
	DefaultMemoryLimit    = 256 << 20
	DefaultCallTimeout    = 2 * time.Second
	DefaultAcquireTimeout = 5 * time.Second
)

// Options configure a WASM engine.
type Options struct {
	// Module is a module implementing docs/masking-abi.md
	// (masking.module); nil means BuiltinModule.
	Module []byte
	// Profiles are the configured profiles (masking.profiles), besides the
	// built-in ones.
	Profiles map[string]Spec
	// HMACKey keys the hmac operator (from a file or the environment).
	HMACKey []byte
	// PoolSize bounds the module instances alive at once, each masking one
	// chunk at a time (the built-in one holds about 3 MB of linear memory
	// after a 10 MB body); 0 means GOMAXPROCS.
	PoolSize int
	// MemoryLimit bounds each instance's linear memory, in bytes; 0 means
	// DefaultMemoryLimit.
	MemoryLimit int
	// CallTimeout bounds each call into a module. A custom module (Module
	// set) still running at the deadline is interrupted, closed and
	// discarded, and its body fails. The built-in module is not
	// interrupted (wazero's interruption checks cost it 3–7× its speed):
	// its calls are linear in their input, which the host bounds, and a
	// call that returns after the deadline still fails its body and has
	// its instance discarded (docs/masking-abi.md). 0 means
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// AcquireTimeout bounds the wait for a free instance. 0 means
	// DefaultAcquireTimeout.
	AcquireTimeout time.Duration
	// CacheDir keeps compiled modules across restarts; "" keeps them in
	// memory.
	CacheDir string

	// timed runs Module's calls timed, as the built-in module's, rather
	// than interruptible: for the tests and benchmarks of the Go
	// reference module, which this repository builds too.
	timed bool
}

// WASM is the masking engine: a WASM module compiled once and run in a
// bounded pool of instances. An instance that traps, exits or overruns its
// call deadline is discarded and replaced by a fresh one; the body it was
// masking fails closed.
type WASM struct {
	core
	rt    wazero.Runtime
	cache wazero.CompilationCache
	// sharedCache marks the process-wide cache, which Close leaves open.
	sharedCache bool
	compiled    wazero.CompiledModule
	timeout     time.Duration
	acquire     time.Duration
	// interrupt is set for a custom module: calls run under a context
	// whose deadline closes the module (WithCloseOnContextDone). The
	// built-in module's calls are timed instead.
	interrupt bool
	idle      chan *instance
	slots     chan struct{}

	mu      sync.Mutex
	closed  bool
	traps   int
	created int
}

// instance is one instantiated module and the regions it handed the host.
type instance struct {
	mod                                  api.Module
	mem                                  api.Memory
	alloc, free, configure, mask, result api.Function
	handles                              map[int]int32
	in, inCap                            uint32
	st, stCap                            uint32
	res                                  uint32 // custos_result's address, fixed for the instance
	stack                                [8]uint64
}

// NewWASM compiles the module, instantiates one instance and configures
// every named profile in it, so that a bad module or profile is an error
// here rather than on a response.
func NewWASM(ctx context.Context, o Options) (*WASM, error) {
	ps, err := newProfiles(o.Profiles, o.HMACKey)
	if err != nil {
		return nil, err
	}
	interrupt := o.Module != nil && !bytes.Equal(o.Module, BuiltinModule) && !o.timed
	if o.Module == nil {
		o.Module = BuiltinModule
	}
	if o.PoolSize <= 0 {
		o.PoolSize = runtime.GOMAXPROCS(0)
	}
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = DefaultMemoryLimit
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.AcquireTimeout <= 0 {
		o.AcquireTimeout = DefaultAcquireTimeout
	}
	w := &WASM{timeout: o.CallTimeout, acquire: o.AcquireTimeout, interrupt: interrupt,
		idle: make(chan *instance, o.PoolSize), slots: make(chan struct{}, o.PoolSize)}
	w.ps, w.be = ps, w
	if o.CacheDir != "" {
		w.cache, err = wazero.NewCompilationCacheWithDir(o.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("masking module cache %s: %w", o.CacheDir, err)
		}
	} else {
		// One in-memory cache for the process: a configuration reload
		// builds a new engine, and compiling the module again would cost
		// seconds.
		w.cache, w.sharedCache = processCache(), true
	}
	pages := uint32((o.MemoryLimit + 65535) / 65536)
	cfg := wazero.NewRuntimeConfig().
		WithCompilationCache(w.cache).
		WithCloseOnContextDone(interrupt).
		WithMemoryLimitPages(pages)
	w.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, w.rt); err != nil {
		w.Close(ctx)
		return nil, fmt.Errorf("masking module: WASI: %w", err)
	}
	w.compiled, err = w.rt.CompileModule(ctx, o.Module)
	if err != nil {
		w.Close(ctx)
		return nil, fmt.Errorf("masking module: compile: %w", err)
	}
	w.slots <- struct{}{}
	in, err := w.instantiate(ctx)
	if err != nil {
		<-w.slots
		w.Close(ctx)
		return nil, err
	}
	for name := range ps.specs {
		u, err := w.union(NewProfile(name))
		if err == nil {
			_, err = w.handle(ctx, in, u)
		}
		if err != nil {
			w.discard(in)
			w.Close(ctx)
			return nil, err
		}
	}
	w.put(in)
	return w, nil
}

// Open starts masking one body.
func (w *WASM) Open(p Profile, b Body) (Stream, error) { return w.open(p, b) }

// Close closes every instance and the runtime.
func (w *WASM) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	err := w.rt.Close(ctx)
	if w.cache != nil && !w.sharedCache {
		_ = w.cache.Close(ctx)
	}
	return err
}

// Stats are counters for metrics and tests.
type Stats struct {
	// Instances is how many instances were created in all.
	Instances int
	// Discarded is how many were thrown away after a failed call.
	Discarded int
}

// Stats returns the engine's counters.
func (w *WASM) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return Stats{Instances: w.created, Discarded: w.traps}
}

func (w *WASM) instantiate(ctx context.Context) (*instance, error) {
	mc := wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize").WithRandSource(rand.Reader)
	mod, err := w.rt.InstantiateModule(ctx, w.compiled, mc)
	if err != nil {
		return nil, fmt.Errorf("masking module: instantiate: %w", err)
	}
	in := &instance{mod: mod, mem: mod.Memory(), handles: map[int]int32{}}
	fns := map[string]*api.Function{
		"custos_alloc": &in.alloc, "custos_free": &in.free, "custos_configure": &in.configure,
		"custos_mask": &in.mask, "custos_result": &in.result,
	}
	for name, f := range fns {
		if *f = mod.ExportedFunction(name); *f == nil {
			mod.Close(ctx)
			return nil, fmt.Errorf("masking module: no export %s (docs/masking-abi.md)", name)
		}
	}
	v := mod.ExportedFunction("custos_abi_version")
	if in.mem == nil || v == nil {
		mod.Close(ctx)
		return nil, errors.New("masking module: no memory or custos_abi_version export (docs/masking-abi.md)")
	}
	res, err := v.Call(ctx)
	if err != nil || len(res) != 1 || api.DecodeI32(res[0]) != ABIVersion {
		mod.Close(ctx)
		return nil, fmt.Errorf("masking module: ABI version is not %d", ABIVersion)
	}
	w.mu.Lock()
	w.created++
	w.mu.Unlock()
	return in, nil
}

// get borrows an instance, creating one when the pool has room.
func (w *WASM) get() (*instance, error) {
	select {
	case w.slots <- struct{}{}:
	default:
		t := time.NewTimer(w.acquire)
		defer t.Stop()
		select {
		case w.slots <- struct{}{}:
		case <-t.C:
			return nil, errors.New("masking: no module instance free in time")
		}
	}
	select {
	case in := <-w.idle:
		return in, nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	defer cancel()
	in, err := w.instantiate(ctx)
	if err != nil {
		<-w.slots
		return nil, err
	}
	return in, nil
}

func (w *WASM) put(in *instance) {
	w.idle <- in
	<-w.slots
}

// discard throws an instance away after a failed call.
func (w *WASM) discard(in *instance) {
	_ = in.mod.Close(context.Background())
	w.mu.Lock()
	w.traps++
	w.mu.Unlock()
	<-w.slots
}

// errOverran says a call into the built-in module returned after its
// deadline.
var errOverran = errors.New("call ran past its deadline")

// callFn calls f with the instance's stack holding params, under the call
// deadline; it returns the i32 result. A custom module is interrupted at
// the deadline; a call into the built-in one is timed, and one that
// returns late fails (its instance is discarded).
func (w *WASM) callFn(ctx context.Context, in *instance, f api.Function, params ...uint64) (int32, error) {
	copy(in.stack[:], params)
	if w.interrupt {
		ctx, cancel := context.WithTimeout(ctx, w.timeout)
		defer cancel()
		if err := f.CallWithStack(ctx, in.stack[:]); err != nil {
			return 0, err
		}
		return api.DecodeI32(in.stack[0]), nil
	}
	t0 := time.Now()
	if err := f.CallWithStack(ctx, in.stack[:]); err != nil {
		return 0, err
	}
	if time.Since(t0) > w.timeout {
		return 0, errOverran
	}
	return api.DecodeI32(in.stack[0]), nil
}

// region makes sure the instance holds a region of at least n bytes at
// *ptr (capacity *capa), reallocating it in powers of two.
func (w *WASM) region(ctx context.Context, in *instance, ptr, capa *uint32, n int) error {
	if uint32(n) <= *capa && *ptr != 0 {
		return nil
	}
	if *ptr != 0 {
		if _, err := w.callFn(ctx, in, in.free, uint64(*ptr)); err != nil {
			return err
		}
		*ptr, *capa = 0, 0
	}
	size := 64 << 10
	for size < n {
		size *= 2
	}
	p, err := w.callFn(ctx, in, in.alloc, api.EncodeI32(int32(size)))
	if err != nil {
		return err
	}
	if p == 0 {
		return errors.New("masking module: alloc failed")
	}
	*ptr, *capa = uint32(p), uint32(size)
	return nil
}

// handle returns the instance's handle for u, configuring it on first use.
func (w *WASM) handle(ctx context.Context, in *instance, u *union) (int32, error) {
	if h, ok := in.handles[u.id]; ok {
		return h, nil
	}
	if err := w.region(ctx, in, &in.in, &in.inCap, len(u.json)); err != nil {
		return 0, err
	}
	if !in.mem.Write(in.in, u.json) {
		return 0, errors.New("masking module: memory write out of range")
	}
	h, err := w.callFn(ctx, in, in.configure, uint64(in.in), api.EncodeI32(int32(len(u.json))))
	if err != nil {
		return 0, err
	}
	if h <= 0 {
		return 0, fmt.Errorf("masking module: configure: %s", w.message(ctx, in))
	}
	in.handles[u.id] = h
	return h, nil
}

// message is the module's error text for the last failed call, bounded.
func (w *WASM) message(ctx context.Context, in *instance) string {
	r, err := w.results(ctx, in)
	if err != nil || r[8] == 0 {
		return "no message"
	}
	n := r[8]
	if n > 512 {
		n = 512
	}
	b, ok := in.mem.Read(r[7], n)
	if !ok {
		return "no message"
	}
	return string(b)
}

func (w *WASM) results(ctx context.Context, in *instance) ([9]uint32, error) {
	var r [9]uint32
	if in.res == 0 {
		p, err := w.callFn(ctx, in, in.result)
		if err != nil {
			return r, err
		}
		in.res = uint32(p)
	}
	b, ok := in.mem.Read(in.res, 36)
	if !ok {
		return r, errors.New("masking module: result out of range")
	}
	for k := range r {
		r[k] = binary.LittleEndian.Uint32(b[4*k:])
	}
	return r, nil
}

// status names the ABI's error statuses.
var status = map[int32]error{
	-1: engine.ErrSyntax, -2: engine.ErrBinary, -3: engine.ErrTooLarge,
	-4: engine.ErrTruncated, -5: engine.ErrState,
}

func (w *WASM) call(u *union, f engine.Format, state, in []byte, final bool, dst, stDst []byte) ([]byte, int, []byte, engine.Report, error) {
	inst, err := w.get()
	if err != nil {
		return nil, 0, nil, engine.Report{}, err
	}
	out, consumed, next, rep, err, broken := w.callIn(inst, u, f, state, in, final, dst, stDst)
	if broken {
		w.discard(inst)
	} else {
		w.put(inst)
	}
	return out, consumed, next, rep, err
}

// callIn runs one mask call in inst; broken says inst must be discarded
// (a trap, an exit, a deadline, a reply out of bounds).
func (w *WASM) callIn(inst *instance, u *union, f engine.Format, state, in []byte, final bool, dst, stDst []byte) (out []byte, consumed int, next []byte, rep engine.Report, err error, broken bool) {
	ctx := context.Background()
	fail := func(e error) ([]byte, int, []byte, engine.Report, error, bool) {
		return nil, 0, nil, engine.Report{}, fmt.Errorf("masking module: %w", e), true
	}
	h, err := w.handle(ctx, inst, u)
	if err != nil {
		return fail(err)
	}
	if err := w.region(ctx, inst, &inst.in, &inst.inCap, len(in)); err != nil {
		return fail(err)
	}
	if err := w.region(ctx, inst, &inst.st, &inst.stCap, len(state)); err != nil {
		return fail(err)
	}
	if !inst.mem.Write(inst.in, in) || !inst.mem.Write(inst.st, state) {
		return fail(errors.New("memory write out of range"))
	}
	flags := uint64(0)
	if final {
		flags = 1
	}
	st, err := w.callFn(ctx, inst, inst.mask, uint64(h), uint64(f), flags,
		uint64(inst.st), uint64(len(state)), uint64(inst.in), uint64(len(in)))
	if err != nil {
		return fail(err)
	}
	if st != 0 {
		if e, ok := status[st]; ok {
			// the body is at fault, not the instance: keep it
			return nil, 0, nil, engine.Report{}, e, false
		}
		return fail(fmt.Errorf("mask returned status %d", st))
	}
	r, err := w.results(ctx, inst)
	if err != nil {
		return fail(err)
	}
	read := func(p, n uint32) ([]byte, bool) {
		if n == 0 {
			return nil, true
		}
		return inst.mem.Read(p, n)
	}
	o, ok1 := read(r[0], r[1])
	s, ok2 := read(r[3], r[4])
	rb, ok3 := read(r[5], r[6])
	if !ok1 || !ok2 || !ok3 || int(r[2]) > len(in) {
		return fail(errors.New("result out of range"))
	}
	rep, err = engine.ParseReport(rb)
	if err != nil {
		return fail(err)
	}
	return append(dst, o...), int(r[2]), append(stDst, s...), rep, nil, false
}

var (
	processCacheOnce sync.Once
	processCacheVal  wazero.CompilationCache
)

// processCache is the in-memory compilation cache every engine without a
// CacheDir shares.
func processCache() wazero.CompilationCache {
	processCacheOnce.Do(func() { processCacheVal = wazero.NewCompilationCache() })
	return processCacheVal
}
