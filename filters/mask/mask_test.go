package mask

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/custos-dev/custos/filters/mask/engine"
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

func TestReportNamesCarryNoValues(t *testing.T) {
	for name, ok := range map[string]bool{
		"digits": true, "card": true, "customer_id": true, "pattern_2": true,
		"": false, "4111111111111111": false, "a4111": false, "jane@example.com": false, "DE89": false,
		"123-45-6789": false, "x_1234": false, "way_too_long_for_an_entity_name_ok": false,
	} {
		if entityName(name) != ok {
			t.Errorf("entityName(%q) = %v", name, !ok)
		}
	}
}

// A report's counts keep the profile's names and entity-shaped names; a
// name that could be a value, and an unknown operator, become "other".
func TestReportCountsKeepNoValues(t *testing.T) {
	s := &stream{u: &union{names: map[string]bool{"card": true}}}
	s.add(engine.Report{Counts: []engine.Count{
		{Entity: "card", Operator: engine.Redact, N: 2},
		{Entity: "digits", Operator: engine.Last4, N: 1},
		{Entity: "4111111111111111", Operator: engine.Redact, N: 1},
		{Entity: "card", Operator: "4111111111111111", N: 1},
	}})
	want := map[string]map[string]int{"card": {"redact": 2, Other: 1}, "digits": {"last4": 1}, Other: {"redact": 1}}
	if got := s.Details().Counts; !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v", got)
	}
	// many names (a replacement module's): merged all the same
	for range 2 {
		var r engine.Report
		for c := 'a'; c <= 't'; c++ {
			r.Counts = append(r.Counts, engine.Count{Entity: "name_" + string(c), Operator: engine.HMAC, N: 1})
			want["name_"+string(c)] = map[string]int{engine.HMAC: 2}
		}
		r.Counts = append(r.Counts, engine.Count{Entity: "card", Operator: engine.Redact, N: 1})
		s.add(r)
	}
	want["card"][engine.Redact] += 2
	if got := s.Details().Counts; !reflect.DeepEqual(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	if got := s.Report(); got["card"] != 5 || got["name_t"] != 2 || got[Other] != 1 || len(got) != 23 {
		t.Fatalf("report %v", got)
	}
}

// A stream keeps at most 1,000 pointers and counts the rest, whether the
// reports come in one call or several.
func TestReportPointersAreBounded(t *testing.T) {
	s := &stream{u: &union{}}
	ptrs := func(call, n int) []string {
		var p []string
		for k := range n {
			p = append(p, fmt.Sprintf("/%d/%d", call, k))
		}
		return p
	}
	first := ptrs(0, 600)
	s.add(engine.Report{Pointers: first})
	s.add(engine.Report{Pointers: ptrs(1, 600), Dropped: 7})
	s.add(engine.Report{Pointers: ptrs(2, 600)})
	d := s.Details()
	if len(d.Pointers) != maxPointers || d.PointersDropped != 800+7 {
		t.Fatalf("%d pointers kept, %d dropped", len(d.Pointers), d.PointersDropped)
	}
	if d.Pointers[599] != "/0/599" || d.Pointers[600] != "/1/0" || d.Pointers[999] != "/1/399" {
		t.Fatalf("pointers %q %q %q", d.Pointers[599], d.Pointers[600], d.Pointers[999])
	}
	if len(first) != 600 || first[0] != "/0/0" {
		t.Fatal("the first report's pointers changed")
	}
}
