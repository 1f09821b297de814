package mask

import (
	"errors"
	"testing"
)

func TestProfileIsAUnion(t *testing.T) {
	p := NewProfile("pci", "", "pii", "pci")
	if p.String() != "pci+pii" || p.Empty() {
		t.Fatalf("profile %v", p.Names)
	}
	if !NewProfile("", "").Empty() {
		t.Fatal("no names is not empty")
	}
}

func TestNoneNeverServesAMaskedBodyUnmasked(t *testing.T) {
	if _, err := (None{}).Open(NewProfile("pci"), Body{}); !errors.Is(err, ErrNoEngine) {
		t.Fatalf("Open(pci) = %v, want ErrNoEngine", err)
	}
	if err := Masks(None{}, NewProfile("pii")); err == nil {
		t.Fatal("Masks accepted a profile no engine can apply")
	}
	s, err := (None{}).Open(Profile{}, Body{})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Mask([]byte("abc"), true); err != nil || string(out) != "abc" || s.Report() != nil {
		t.Fatalf("pass-through %q %v %v", out, err, s.Report())
	}
}
