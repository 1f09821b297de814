package extproc

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

func fullVerdict() Verdict {
	return Verdict{
		RequestID: "r-1", Connection: "customers", SessionID: "s-1", Session: "nightly",
		Principal: "https://sts.windows.net/t/oid-1", Groups: []string{"readers", "ops"},
		Method: "DELETE", Path: "/api/7", DecisionID: "d-1", Revision: "rev-9",
		Reasons:     []string{"writes need the write level", "second reason"},
		MaskProfile: []string{"pci", "pii"},
		Hold:        &Hold{ApprovalID: "ap-1", Timeout: 90 * time.Second},
		ExtProc:     true,
	}
}

func TestVerdictRoundTrip(t *testing.T) {
	for name, v := range map[string]Verdict{
		"full":    fullVerdict(),
		"minimal": {RequestID: "r", Connection: "c", SessionID: "s", Session: "default", Principal: "/anonymous", Method: "GET", Path: "/", DecisionID: "d"},
	} {
		t.Run(name, func(t *testing.T) {
			// Through JSON too, as the metadata travels through Envoy.
			b, err := protojson.Marshal(v.Struct())
			if err != nil {
				t.Fatal(err)
			}
			var s structpb.Struct
			if err := protojson.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
			got, err := verdictFrom(&s)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, v) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, v)
			}
		})
	}
}

func TestVerdictFailsClosedOnAnythingMissingOrMalformed(t *testing.T) {
	str := structpb.NewStringValue
	list := func(vs ...*structpb.Value) *structpb.Value {
		return structpb.NewListValue(&structpb.ListValue{Values: vs})
	}
	hold := func(f map[string]*structpb.Value) *structpb.Value {
		return structpb.NewStructValue(&structpb.Struct{Fields: f})
	}
	cases := map[string]func(f map[string]*structpb.Value){
		"request id missing":    func(f map[string]*structpb.Value) { delete(f, "request_id") },
		"connection empty":      func(f map[string]*structpb.Value) { f["connection"] = str("") },
		"path a number":         func(f map[string]*structpb.Value) { f["upstream_path"] = structpb.NewNumberValue(1) },
		"groups not a list":     func(f map[string]*structpb.Value) { f["groups"] = str("readers") },
		"reasons with a number": func(f map[string]*structpb.Value) { f["reasons"] = list(str("a"), structpb.NewNumberValue(2)) },
		"mask profile a struct": func(f map[string]*structpb.Value) { f["mask_profile"] = hold(nil) },
		"hold without id": func(f map[string]*structpb.Value) {
			f["hold"] = hold(map[string]*structpb.Value{"timeout_ms": structpb.NewNumberValue(5)})
		},
		"hold of zero ms": func(f map[string]*structpb.Value) {
			f["hold"] = hold(map[string]*structpb.Value{"approval_id": str("a"), "timeout_ms": structpb.NewNumberValue(0)})
		},
		"hold over an hour": func(f map[string]*structpb.Value) {
			f["hold"] = hold(map[string]*structpb.Value{"approval_id": str("a"), "timeout_ms": structpb.NewNumberValue(3600001)})
		},
		"hold of fractional ms": func(f map[string]*structpb.Value) {
			f["hold"] = hold(map[string]*structpb.Value{"approval_id": str("a"), "timeout_ms": structpb.NewNumberValue(1.5)})
		},
		"hold a string":          func(f map[string]*structpb.Value) { f["hold"] = str("ap-1") },
		"extproc a string":       func(f map[string]*structpb.Value) { f["extproc"] = str("true") },
		"denied":                 func(f map[string]*structpb.Value) { f["custos_denied"] = structpb.NewBoolValue(true) },
		"denied not a bool":      func(f map[string]*structpb.Value) { f["custos_denied"] = str("false") },
		"principal null":         func(f map[string]*structpb.Value) { f["principal"] = structpb.NewNullValue() },
		"decision id missing":    func(f map[string]*structpb.Value) { delete(f, "decision_id") },
		"session name missing":   func(f map[string]*structpb.Value) { delete(f, "session") },
		"method an empty string": func(f map[string]*structpb.Value) { f["method"] = str("") },
		"session id wrong type":  func(f map[string]*structpb.Value) { f["session_id"] = list() },
		"request id a bool":      func(f map[string]*structpb.Value) { f["request_id"] = structpb.NewBoolValue(true) },
		"connection a nil value": func(f map[string]*structpb.Value) { f["connection"] = nil },
		"hold timeout not number": func(f map[string]*structpb.Value) {
			f["hold"] = hold(map[string]*structpb.Value{"approval_id": str("a"), "timeout_ms": str("5")})
		},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			s := fullVerdict().Struct()
			change(s.Fields)
			if v, err := verdictFrom(s); err == nil {
				t.Fatalf("accepted %+v", v)
			} else if !strings.Contains(err.Error(), errNoVerdict.Error()) {
				t.Fatalf("error %v does not say there is no verdict", err)
			}
		})
	}
	if _, err := verdictFrom(nil); err == nil {
		t.Fatal("nil accepted")
	}
	// Keys a newer Check adds are ignored while replicas are upgraded.
	s := fullVerdict().Struct()
	s.Fields["added_later"] = str("x")
	if _, err := verdictFrom(s); err != nil {
		t.Fatalf("an unknown key was refused: %v", err)
	}
}

// FuzzVerdictFrom: whatever the metadata, the reader never panics, and what
// it accepts writes back to what it read.
func FuzzVerdictFrom(f *testing.F) {
	b, _ := protojson.Marshal(fullVerdict().Struct())
	f.Add(b)
	f.Add([]byte(`{"request_id":"r","connection":"c","session_id":"s","session":"n","principal":"p","method":"GET","upstream_path":"/","decision_id":"d","hold":{"approval_id":"a","timeout_ms":1e300}}`))
	f.Add([]byte(`{"reasons":[null,{"a":1}],"custos_denied":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s structpb.Struct
		if protojson.Unmarshal(data, &s) != nil {
			return
		}
		v, err := verdictFrom(&s)
		if err != nil {
			return
		}
		again, err := verdictFrom(v.Struct())
		if err != nil {
			t.Fatalf("an accepted verdict does not read back: %v", err)
		}
		if !reflect.DeepEqual(normalise(again), normalise(v)) {
			t.Fatalf("round trip changed it:\n%+v\n%+v", again, v)
		}
	})
}

// normalise treats an empty list as no list: both mean none.
func normalise(v Verdict) Verdict {
	for _, l := range []*[]string{&v.Groups, &v.Reasons, &v.MaskProfile} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return v
}
