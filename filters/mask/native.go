package mask

import (
	"sync"

	"github.com/custos-dev/custos/filters/mask/engine"
)

// Native runs the masking engine in-process, without WASM: the same
// detectors as the built-in module, for callers that do not need a
// replaceable or sandboxed engine (and to measure what WASM costs).
type Native struct {
	core
	maskers sync.Pool
}

// NativeOptions configure a Native engine.
type NativeOptions struct {
	// Profiles are the configured profiles (masking.profiles), besides the
	// built-in ones.
	Profiles map[string]Spec
	// HMACKey keys the hmac operator.
	HMACKey []byte
}

// NewNative returns a Native engine.
func NewNative(o NativeOptions) (*Native, error) {
	ps, err := newProfiles(o.Profiles, o.HMACKey)
	if err != nil {
		return nil, err
	}
	n := &Native{}
	n.maskers.New = func() any { return engine.NewMasker() }
	n.ps = ps
	n.be = n
	n.compile = func(u *union) error {
		p, err := engine.Compile(u.cfg)
		u.native = p
		return err
	}
	for name := range ps.specs {
		if _, err := n.union(NewProfile(name)); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Open starts masking one body.
func (n *Native) Open(p Profile, b Body) (Stream, error) { return n.open(p, b) }

func (n *Native) call(u *union, f engine.Format, state, in []byte, final bool, dst, stDst []byte) ([]byte, int, []byte, engine.Report, error) {
	m := n.maskers.Get().(*engine.Masker)
	defer n.maskers.Put(m)
	r, err := m.Mask(u.native, f, state, in, final)
	if err != nil {
		return nil, 0, nil, engine.Report{}, err
	}
	return append(dst, r.Out...), r.Consumed, append(stDst, r.State...), m.Report(u.native), nil
}
