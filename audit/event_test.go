package audit_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/filters/record"
)

// The encoding is the hashed form: a change to it changes every leaf hash, so
// it is pinned here byte for byte.
func TestEventCanonicalJSON(t *testing.T) {
	e := audit.Event{
		Kind: audit.Response, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)),
		LogID: "replica-1", Index: 42, SessionID: "sid", Session: "nightly", RequestID: "r-1", Connection: "customers",
		Actor:      audit.Actor{UID: "https://issuer/agent", Type: "workload", Groups: []string{"b", "a"}},
		Request:    &audit.HTTPRequest{Method: "GET", Path: "/7\"<\x01é"},
		Response:   &audit.HTTPResponse{Code: 200},
		Masking:    &audit.Masking{Profile: "pci", Counts: map[string]int{"iban": 1, "card": 3}},
		BodySHA256: fmt.Sprintf("%x", sha256.Sum256(nil)),
	}
	want := `{"activity_id":2,"activity_name":"Read","actor":{"user":{"groups":[{"name":"b"},{"name":"a"}],"type":"workload","uid":"https://issuer/agent"}},"category_uid":6,"class_name":"API Activity","class_uid":6003,"custos":{"body_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","connection":"customers","index":42,"kind":"response","log_id":"replica-1","masking":{"counts":{"card":3,"iban":1},"profile":"pci"},"request_id":"r-1","session":"nightly","session_id":"sid"},"http_request":{"http_method":"GET","url":{"path":"/7\"<\u0001é"}},"http_response":{"code":200},"metadata":{"log_name":"replica-1","product":{"name":"custos","vendor_name":"custos"},"version":"1.3.0"},"severity_id":1,"status":"Success","status_id":1,"time":"2026-01-02T02:04:05.000000006Z","type_uid":600302}`
	if got := string(e.Encode()); got != want {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, want)
	}
	// It is JSON, and decodes to the same event.
	if !json.Valid(e.Encode()) {
		t.Fatal("not JSON")
	}
	d, err := audit.DecodeEvent(e.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Encode()) != want {
		t.Fatalf("decode and encode changed it:\n%s", d.Encode())
	}
}

// custos.masking in full: counts by operator, the pointers (escaped as JSON
// strings), how many were dropped, and a body passed unread.
func TestMaskingCanonicalJSON(t *testing.T) {
	e := audit.Event{Kind: audit.Response, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), LogID: "l", Index: 1,
		Masking: &audit.Masking{Profile: "pci+pii",
			Counts:          map[string]int{"card": 3, "email": 1},
			Operators:       map[string]map[string]int{"card": {"redact": 2, "last4": 1}, "email": {"hmac": 1}},
			Pointers:        []string{"/customers/0/card", "/[REDACTED:CARD]/cvv", "/a~1b/\"quoted\""},
			PointersDropped: 12, Unread: true}}
	want := `"masking":{"counts":{"card":3,"email":1},"operators":{"card":{"last4":1,"redact":2},"email":{"hmac":1}},"pointers":["/customers/0/card","/[REDACTED:CARD]/cvv","/a~1b/\"quoted\""],"pointers_dropped":12,"profile":"pci+pii","unread":true}`
	got := string(e.Encode())
	if !strings.Contains(got, want) {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, want)
	}
	d, err := audit.DecodeEvent(e.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Encode()) != got {
		t.Fatalf("decode and encode changed it:\n%s", d.Encode())
	}
}

func TestEveryKindHasTheContractFields(t *testing.T) {
	for _, k := range audit.Kinds {
		e := event(1)
		e.Kind = k
		var m map[string]any
		if err := json.Unmarshal(e.Encode(), &m); err != nil {
			t.Fatal(err)
		}
		c := m["custos"].(map[string]any)
		for _, f := range []string{"log_id", "index", "session_id", "session", "request_id", "kind"} {
			if _, ok := c[f]; !ok {
				t.Errorf("%s: no custos.%s", k, f)
			}
		}
		for _, f := range []string{"class_uid", "activity_id", "time", "actor"} {
			if _, ok := m[f]; !ok {
				t.Errorf("%s: no %s", k, f)
			}
		}
		if u := m["actor"].(map[string]any)["user"].(map[string]any); u["uid"] == nil || u["type"] == nil || u["groups"] == nil {
			t.Errorf("%s: actor.user lacks uid, type or groups", k)
		}
	}
}

func TestFromRecord(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   record.Event
		want []string
	}{
		{record.Event{Kind: record.Decided, RequestID: "r", SessionID: "s", Session: "n", Principal: "iss/sub", Method: "DELETE", Path: "/x",
			DecisionID: "d", Allow: false, Status: 403, Reasons: []string{"no"}, Revision: "rev", Action: "http", Summary: "DELETE /x", Risk: "destructive", Started: start},
			[]string{`"kind":"decision"`, `"decision":{"allow":false,"id":"d","policy_revision":"rev","reasons":["no"]}`, `"action":{"kind":"http","risk":"destructive","summary":"DELETE /x"}`, `"activity_id":4`, `"status_id":2`, `"uid":"iss/sub"`}},
		{record.Event{Kind: record.Completed, RequestID: "r", Status: 200, MaskProfile: "pci", Masked: map[string]int{"card": 2}, Started: start, Finished: start.Add(time.Second)},
			[]string{`"kind":"response"`, `"http_response":{"code":200}`, `"masking":{"counts":{"card":2},"profile":"pci"}`, `"end_time":"2026-01-01T00:00:01Z"`}},
		{record.Event{Kind: record.Completed, RequestID: "r", Status: 200, MaskProfile: "pci", Masked: map[string]int{"card": 2},
			MaskedBy: map[string]map[string]int{"card": {"hmac": 2}}, MaskedPointers: []string{"/0/card", "/1/card"}, MaskedPointersDropped: 3},
			[]string{`"masking":{"counts":{"card":2},"operators":{"card":{"hmac":2}},"pointers":["/0/card","/1/card"],"pointers_dropped":3,"profile":"pci"}`}},
		{record.Event{Kind: record.Completed, RequestID: "r", Status: 200, MaskProfile: "pci", MaskUnread: true},
			[]string{`"masking":{"counts":{},"profile":"pci","unread":true}`}},
		{record.Event{Kind: record.Aborted, RequestID: "r", Detail: "client left", Finished: start},
			[]string{`"kind":"aborted"`, `"detail":"client left"`, `"status_id":2`}},
		{record.Event{Kind: record.Held, RequestID: "r", DecisionID: "d"},
			[]string{`"kind":"approval_requested"`, `"approval":{"id":"d","state":"pending"}`}},
	} {
		e := audit.FromRecord(tc.in)
		b := string(e.Encode())
		for _, w := range tc.want {
			if !strings.Contains(b, w) {
				t.Errorf("%s: lacks %s in %s", tc.in.Kind, w, b)
			}
		}
	}
}

func TestPositionString(t *testing.T) {
	p := audit.Position{LogID: "replica-1", Index: 42}
	q, err := audit.ParsePosition(p.String())
	if err != nil || q != p || p.String() != "replica-1/42" {
		t.Fatalf("%v %v %v", p, q, err)
	}
	for _, bad := range []string{"", "x", "/1", "x/", "x/-1", "x/01", "x/1a"} {
		if _, err := audit.ParsePosition(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestRecorderIsARecordRecorder(t *testing.T) {
	l := openLog(t, audit.Options{Dir: t.TempDir(), Key: newKey(t, "log")})
	defer l.Close()
	var r record.Recorder = audit.Recorder{Log: l}
	if err := r.Record(t.Context(), record.Event{Kind: record.Decided, RequestID: "r-0", Allow: true}); err != nil {
		t.Fatal(err)
	}
	p, err := audit.Recorder{Log: l}.RecordAt(t.Context(), record.Event{Kind: record.Completed, RequestID: "r-1", Status: 200})
	if err != nil || p.Index != 1 || p.LogID != "log" {
		t.Fatalf("%v %v", p, err)
	}
	rec, _ := l.Read(1)
	if e, err := audit.DecodeEvent(rec); err != nil || e.RequestID != "r-1" || e.Kind != audit.Response {
		t.Fatalf("%+v %v", e, err)
	}
}
