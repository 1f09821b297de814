package mask

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"
)

// repoRoot is the module's root, two levels up.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// buildGuest builds a wasip1 guest package with the flags `make wasm` uses.
func buildGuest(t testing.TB, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-buildmode=c-shared",
		"-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOWASM=", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
}

// TestGuestModuleIsReproducible proves the committed module is what the
// guest's source builds to, under the toolchain go.mod records.
func TestGuestModuleIsReproducible(t *testing.T) {
	mod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	if m := regexp.MustCompile(`(?m)^toolchain\s+(\S+)`).FindSubmatch(mod); m != nil {
		want = string(m[1])
	} else if m := regexp.MustCompile(`(?m)^go\s+(\S+)`).FindSubmatch(mod); m != nil {
		want = "go" + string(m[1])
	}
	if runtime.Version() != want {
		t.Skipf("go.mod records %s and this is %s: another toolchain builds another module, so the committed one cannot be compared", want, runtime.Version())
	}
	out := filepath.Join(t.TempDir(), "custos-mask.wasm")
	buildGuest(t, "./filters/mask/guest", out)
	built, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, goModule) {
		t.Fatalf("filters/mask/guest/custos-mask.wasm (%d bytes) is not what the source builds to (%d bytes): run make wasm and commit it", len(goModule), len(built))
	}
}

var exampleWasm []byte

// exampleModule is examples/maskguest, built once per test binary.
func exampleModule(t *testing.T) []byte {
	t.Helper()
	if exampleWasm == nil {
		out := filepath.Join(t.TempDir(), "maskguest.wasm")
		buildGuest(t, "./examples/maskguest", out)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		exampleWasm = b
	}
	return exampleWasm
}

func TestCustomModuleReplacesTheBuiltin(t *testing.T) {
	ctx := context.Background()
	e, err := NewWASM(ctx, Options{Module: exampleModule(t), PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	out, s, err := maskBody(t, e, NewProfile("pci"), Body{ContentType: "application/json"}, []byte(`{"card":"`+card+`","n":1234}`), 5)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"card":"9999999999999999","n":1234}` || s.Report()["digits"] != 1 {
		t.Fatalf("the custom module did not do the masking: %d bytes, report %v", len(out), s.Report())
	}
}

func TestBrokenModuleFailsThatResponseClosed(t *testing.T) {
	ctx := context.Background()
	e, err := NewWASM(ctx, Options{
		Module:      exampleModule(t),
		PoolSize:    1,
		CallTimeout: 300 * time.Millisecond,
		Profiles: map[string]Spec{
			"loop":       {Config: engineConfig(`{"entities":["card"],"custom":{"fault":"loop"}}`)},
			"trap":       {Config: engineConfig(`{"entities":["card"],"custom":{"fault":"trap"}}`)},
			"trap-later": {Config: engineConfig(`{"entities":["card"],"custom":{"fault":"trap","after":2}}`)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	body := []byte("id " + card + " and more text after it, id " + card + " end")
	healthy := func() {
		t.Helper()
		out, _, err := maskBody(t, e, NewProfile("pci"), Body{ContentType: "text/plain"}, body, 10)
		if err != nil || bytes.Contains(out, []byte(card)) {
			t.Fatalf("the next response was not served normally: %v", err)
		}
	}
	healthy()
	for _, name := range []string{"loop", "trap"} {
		before := e.Stats().Discarded
		out, s, err := maskBody(t, e, NewProfile(name), Body{ContentType: "text/plain"}, body, 0)
		if !errors.Is(err, ErrFailed) || len(out) != 0 {
			t.Fatalf("%s: %v with %d bytes out, want ErrFailed and nothing", name, err, len(out))
		}
		if _, err := s.Mask([]byte("more"), true); !errors.Is(err, ErrFailed) {
			t.Fatalf("%s: a failed stream accepted more: %v", name, err)
		}
		if e.Stats().Discarded != before+1 {
			t.Fatalf("%s: the instance was not discarded", name)
		}
		healthy()
	}
	// a trap mid-stream: the chunks before it went out, the rest never does
	s, err := e.Open(NewProfile("trap-later"), Body{ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	var failed error
	for i := 0; i < len(body); i += 8 {
		out, err := s.Mask(body[i:min(i+8, len(body))], i+8 >= len(body))
		if err != nil {
			failed = err
			break
		}
		got = append(got, out...)
	}
	if !errors.Is(failed, ErrFailed) {
		t.Fatalf("trap after two chunks: %v", failed)
	}
	if len(got) == 0 || len(got) >= len(body) || bytes.Contains(got, []byte(card)) {
		t.Fatalf("trap after two chunks: %d of %d bytes went out", len(got), len(body))
	}
	healthy()
}
