package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custos-dev/custos/audit"
	"github.com/custos-dev/custos/examples/demo"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// auditEventOf finds the audit log's event of kind k for request id, newest
// first, and returns it raw and decoded.
func auditEventOf(t *testing.T, s *stacktest.Fixture, k audit.Kind, id string) ([]byte, audit.Event) {
	t.Helper()
	for i := s.CP.Audit.Size() - 1; i >= 0; i-- {
		raw, err := s.CP.Audit.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		e, err := audit.DecodeEvent(raw)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind == k && e.RequestID == id {
			return raw, e
		}
	}
	t.Fatalf("no %s event for request %s in the audit log", k, id)
	return nil, audit.Event{}
}

// total adds up counts.
func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// sensitive are the demo customers' values no masked response may carry.
func sensitive() []string {
	var out []string
	for _, c := range demo.Customers(50, 1) {
		out = append(out, c.CardNumber, c.IBAN, c.SSN, c.AccountNumber)
	}
	return out
}

// leaks returns how many of the demo's sensitive values body holds (the
// values themselves are never printed).
func leaks(body []byte) int {
	n := 0
	for _, v := range sensitive() {
		if bytes.Contains(body, []byte(v)) {
			n++
		}
	}
	return n
}

// maskingUpstream is the demo API with the shapes masking must survive:
// a gzip body, a value split across two writes, \u escapes, a body of a
// type the engine cannot read, and one whose content type lies.
func maskingUpstream() http.Handler {
	d := demo.Handler()
	one := func() []byte {
		rec := httptest.NewRecorder()
		d.ServeHTTP(rec, httptest.NewRequest("GET", "/1", nil))
		return rec.Body.Bytes()
	}
	card := demo.Customers(50, 1)[0].CardNumber
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gzip":
			w.Header().Set("content-type", "application/json")
			w.Header().Set("content-encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write(one())
			zw.Close()
		case "/split":
			w.Header().Set("content-type", "application/json")
			body := []byte(`{"note": "card ` + card + ` on file", "card_number": "` + card + `"}`)
			cut := bytes.Index(body, []byte(card)) + 7
			w.Write(body[:cut])
			w.(http.Flusher).Flush()
			w.Write(body[cut:])
		case "/escaped":
			w.Header().Set("content-type", "application/json")
			var esc strings.Builder
			for _, c := range card {
				esc.WriteString(`\u003` + string(c))
			}
			io.WriteString(w, `{"card_number": "`+esc.String()+`"}`)
		case "/keyed":
			// a document keyed by its values
			c := demo.Customers(50, 1)[1]
			w.Header().Set("content-type", "application/json")
			io.WriteString(w, `{"accounts":{"`+c.IBAN+`":{"card_number":"`+c.CardNumber+`"},"`+card+`":{"limit":100}}}`)
		case "/binary":
			w.Header().Set("content-type", "application/octet-stream")
			w.Write(append([]byte{0, 1, 2}, card...))
		case "/lying":
			w.Header().Set("content-type", "application/json")
			w.Write(append([]byte{0xff, 0, 1, '{'}, card...))
		default:
			d.ServeHTTP(w, r)
		}
	})
}

// Masking through both data planes: the demo's customers come back with no
// card, IBAN, SSN or account number in the body, still valid JSON with a
// right length; gzip bodies, split values and \u escapes are masked;
// Range and Accept-Encoding cannot get unmasked bytes; a body the engine
// cannot read is withheld, and a lying one never leaks.
func TestMaskingThroughBothDataPlanes(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{Handler: maskingUpstream(), Extra: "    masking: pci\n"})

		resp, body := get(t, s.URL+"/customers/", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("list: %d %s", resp.StatusCode, body)
		}
		var list struct{ Customers []map[string]any }
		if err := json.Unmarshal(body, &list); err != nil || len(list.Customers) == 0 {
			t.Fatalf("the masked list is not the JSON it was: %v", err)
		}
		if n := leaks(body); n != 0 {
			t.Fatalf("%d sensitive values reached the agent", n)
		}
		if resp.ContentLength != -1 && resp.ContentLength != int64(len(body)) {
			t.Fatalf("content-length %d for %d bytes", resp.ContentLength, len(body))
		}
		if !strings.Contains(string(body), "[REDACTED:CARD]") {
			t.Fatal("no card was redacted")
		}
		d := s.Events.Of(record.Completed, resp.Header.Get("x-custos-request-id"))
		sum := sha256.Sum256(body)
		if len(d) != 1 || d[0].Masked["card"] == 0 || d[0].MaskProfile != "pci" || d[0].BodySHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("response event %+v: want the counts and the SHA-256 of the body the agent received", d)
		}
		// The evidence says where and by which operator, never what.
		raw, ae := auditEventOf(t, s, audit.Response, resp.Header.Get("x-custos-request-id"))
		m := ae.Masking
		if m == nil || m.Profile != "pci" || m.Counts["card"] != d[0].Masked["card"] || m.Operators["card"]["redact"] != d[0].Masked["card"] ||
			!slices.Contains(m.Pointers, "/customers/0/card_number") || !slices.Contains(m.Pointers, "/customers/1/iban") ||
			len(m.Pointers) != total(d[0].Masked) || m.PointersDropped != 0 {
			t.Fatalf("custos.masking %+v: want counts by operator and a pointer per masked value", m)
		}
		if leaks(raw) != 0 {
			t.Fatal("the audit event holds a sensitive value")
		}

		// A small body of known length is masked whole: its headers say
		// what was masked (counts only) and its right length.
		resp, body = get(t, s.URL+"/customers/1", nil)
		if resp.StatusCode != 200 || leaks(body) != 0 || !json.Valid(body) {
			t.Fatalf("one customer: %d, %d leaks", resp.StatusCode, leaks(body))
		}
		if m := resp.Header.Get("x-custos-masked"); !strings.Contains(m, "card=1") || resp.ContentLength != int64(len(body)) {
			t.Fatalf("x-custos-masked %q, content-length %d for %d bytes", m, resp.ContentLength, len(body))
		}

		// gzip: decoded, masked, encoded again.
		resp, body = get(t, s.URL+"/customers/gzip", map[string]string{"accept-encoding": "gzip"})
		if resp.StatusCode != 200 || resp.Header.Get("content-encoding") != "gzip" {
			t.Fatalf("gzip: %d %q", resp.StatusCode, resp.Header.Get("content-encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || !json.Valid(plain) || leaks(plain) != 0 || leaks(body) != 0 {
			t.Fatalf("gzip body: %v, valid %v, %d leaks", err, json.Valid(plain), leaks(plain))
		}

		for _, path := range []string{"/customers/split", "/customers/escaped"} {
			resp, body = get(t, s.URL+path, nil)
			var decoded map[string]any
			if resp.StatusCode != 200 || json.Unmarshal(body, &decoded) != nil {
				t.Fatalf("%s: %d", path, resp.StatusCode)
			}
			again, _ := json.Marshal(decoded) // \u escapes decoded
			if leaks(body) != 0 || leaks(again) != 0 {
				t.Fatalf("%s: a value reached the agent", path)
			}
		}

		// Keys are masked as values are; the evidence names the masked
		// key, never the value.
		resp, body = get(t, s.URL+"/customers/keyed", nil)
		if resp.StatusCode != 200 || leaks(body) != 0 || !json.Valid(body) {
			t.Fatalf("keyed: %d, %d leaks", resp.StatusCode, leaks(body))
		}
		raw, ae = auditEventOf(t, s, audit.Response, resp.Header.Get("x-custos-request-id"))
		if leaks(raw) != 0 || ae.Masking == nil || !slices.Contains(ae.Masking.Pointers, "/accounts/[REDACTED:IBAN]/card_number") ||
			!slices.Contains(ae.Masking.Pointers, "/accounts/[REDACTED:CARD]") || ae.Masking.Counts["card"] != 2 || ae.Masking.Counts["iban"] != 1 {
			t.Fatalf("keyed: custos.masking %+v, %d leaks in the event", ae.Masking, leaks(raw))
		}

		// Range and Accept-Encoding never reach a masked upstream as sent.
		resp, body = get(t, s.URL+"/customers/1", map[string]string{"range": "bytes=0-40", "accept-encoding": "br"})
		if resp.StatusCode != 200 || leaks(body) != 0 {
			t.Fatalf("range: %d, %d leaks", resp.StatusCode, leaks(body))
		}
		up := last(t, s)
		if up.Header.Get("range") != "" || up.Header.Get("accept-encoding") != "identity" {
			t.Fatalf("the upstream got range %q, accept-encoding %q", up.Header.Get("range"), up.Header.Get("accept-encoding"))
		}

		// A body the engine cannot read is withheld (strict).
		resp, body = get(t, s.URL+"/customers/binary", nil)
		contractError(t, resp, body, 502, "response_withheld")
		if leaks(body) != 0 {
			t.Fatal("the withheld body leaked")
		}

		// /metrics counts what was masked (never a value) and the
		// withheld response.
		met := scrapeMetrics(t, s.CP.HTTPAddr)
		if met[`custos_masked_values_total{connection="customers",entity="card"}`] < 2 ||
			met[`custos_responses_total{connection="customers",outcome="response_withheld"}`] != 1 ||
			met[`custos_responses_total{connection="customers",outcome="completed"}`] < 5 ||
			met[`custos_masking_module_instances{state="created"}`] < 1 {
			t.Fatalf("/metrics: %v", met)
		}

		// A body that lies about its type breaks the response; the agent
		// never gets the unmasked rest.
		req, _ := http.NewRequest("GET", s.URL+"/customers/lying", nil)
		if r2, err := http.DefaultClient.Do(req); err == nil {
			got, _ := io.ReadAll(r2.Body)
			r2.Body.Close()
			if leaks(got) != 0 {
				t.Fatal("a lying body leaked")
			}
		}
	})
}

// masking.module: a custom engine (examples/maskguest, built here for
// wasip1) replaces the built-in one through the configuration, through
// both data planes.
func TestCustomMaskingModuleThroughConfig(t *testing.T) {
	module := filepath.Join(t.TempDir(), "maskguest.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-buildmode=c-shared", "-o", module, "./examples/maskguest")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the example module: %v\n%s", err, out)
	}
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{Extra: "    masking: pci\nmasking:\n  module: " + module + "\n"})
		// The example masks runs of digits with 9s (a toy: its own rules,
		// not the built-in detectors): the card is gone, replaced its way.
		resp, body := get(t, s.URL+"/customers/1", nil)
		card := demo.Customers(1, 1)[0].CardNumber
		if resp.StatusCode != 200 || bytes.Contains(body, []byte(card)) || !bytes.Contains(body, []byte("9999999999999999")) {
			t.Fatalf("the custom module did not mask: %d", resp.StatusCode)
		}
	})
}
