package extproc

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// vector is one golden CheckRequest → verdict case (testdata/check).
type vector struct {
	About   string          `json:"about"`
	Request json.RawMessage `json:"request"`
	Want    struct {
		Status          int            `json:"status"`
		Error           string         `json:"error"`
		HeadersToRemove *[]string      `json:"headers_to_remove"`
		Verdict         map[string]any `json:"verdict"`
	} `json:"want"`
}

// TestGoldenCheckVectors decides every CheckRequest in testdata/check with
// the configuration there and compares what Envoy would get: the status and
// error code, the headers removed, and the verdict's fields (random ids
// aside).
func TestGoldenCheckVectors(t *testing.T) {
	cfg, err := os.ReadFile("testdata/check/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rec := &memRecorder{}
	p := pipelineFor(t, string(cfg), rec, nil)
	svc := New(p, discard())
	files, _ := filepath.Glob("testdata/check/*.json")
	if len(files) < 10 {
		t.Fatalf("only %d vectors", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var v vector
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			var cr authv3.CheckRequest
			if err := protojson.Unmarshal(v.Request, &cr); err != nil {
				t.Fatalf("request: %v", err)
			}
			resp, err := svc.Check(context.Background(), &cr)
			if err != nil {
				t.Fatal(err)
			}
			status := 200
			if d := resp.GetDeniedResponse(); d != nil {
				status = int(d.GetStatus().GetCode())
				var body map[string]any
				if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
					t.Fatal(err)
				}
				if body["error"] != v.Want.Error {
					t.Errorf("error %v, want %s (%s)", body["error"], v.Want.Error, d.GetBody())
				}
			}
			if status != v.Want.Status {
				t.Fatalf("status %d, want %d: %s", status, v.Want.Status, v.About)
			}
			if v.Want.HeadersToRemove != nil {
				got := resp.GetOkResponse().GetHeadersToRemove()
				if !(len(got) == 0 && len(*v.Want.HeadersToRemove) == 0) && !reflect.DeepEqual(got, *v.Want.HeadersToRemove) {
					t.Errorf("headers_to_remove %v, want %v", got, *v.Want.HeadersToRemove)
				}
			}
			if v.Want.Verdict == nil {
				return
			}
			got, err := verdictFrom(resp.GetDynamicMetadata())
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := protojson.Marshal(got.Struct())
			var gotMap map[string]any
			_ = json.Unmarshal(raw, &gotMap)
			for k, want := range v.Want.Verdict {
				if !reflect.DeepEqual(gotMap[k], want) {
					t.Errorf("verdict %s = %v, want %v", k, gotMap[k], want)
				}
			}
		})
	}
}
