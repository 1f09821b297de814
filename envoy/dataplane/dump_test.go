package dataplane_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// With CONFORMANCE_DUMP=dir, each scenario writes what both sides saw (the
// client's responses, the upstream's requests, every CheckRequest and
// ext_proc message) to dir/<test>/<plane>.txt, with ports, ids and times
// blanked, so that `diff -r` shows how the two data planes differ beyond
// what the assertions check.

var dumpDir = os.Getenv("CONFORMANCE_DUMP")

var (
	dumpPort = regexp.MustCompile(`(127\.0\.0\.1|localhost|\[::1\])(:| port_value: ?|"\s*port_value:\s*)\d+`)
	dumpUUID = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	dumpTime = regexp.MustCompile(`(?s)time:\s*\{[^}]*\}`)
	dumpID   = regexp.MustCompile(`\bid:\s*"\d+"`)
	dumpPV   = regexp.MustCompile(`port_value:\s*\d+`)
)

func normalised(s string) string {
	s = dumpPort.ReplaceAllString(s, "${1}${2}PORT")
	s = dumpPV.ReplaceAllString(s, "port_value: PORT")
	s = dumpUUID.ReplaceAllString(s, "UUID")
	s = dumpTime.ReplaceAllString(s, "time: TIME")
	s = dumpID.ReplaceAllString(s, `id: "ID"`)
	return s
}

func dumpHeader(b *strings.Builder, prefix string, h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := h[k]
		switch strings.ToLower(k) {
		case "date":
			v = []string{"DATE"}
		case "x-envoy-upstream-service-time":
			v = []string{"N"}
		}
		fmt.Fprintf(b, "%s%s: %q\n", prefix, strings.ToLower(k), v)
	}
}

func dumpBody(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%q... (%d bytes)", s[:200], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// record notes a client exchange for the dump.
func (h *harness) record(req *http.Request, resp *http.Response, body string) {
	if dumpDir == "" {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CLIENT %s %s\n", req.Method, req.URL.RequestURI())
	fmt.Fprintf(&b, "  status %d, content-length %d\n", resp.StatusCode, resp.ContentLength)
	dumpHeader(&b, "  ", resp.Header)
	fmt.Fprintf(&b, "  body %s\n", dumpBody(body))
	dumpHeader(&b, "  trailer ", resp.Trailer)
	h.dumpMu.Lock()
	h.dump = append(h.dump, b.String())
	h.dumpMu.Unlock()
}

// writeDump writes the scenario's dump when CONFORMANCE_DUMP is set.
func (h *harness) writeDump() {
	if dumpDir == "" {
		return
	}
	var b strings.Builder
	h.dumpMu.Lock()
	for _, s := range h.dump {
		b.WriteString(s)
	}
	h.dumpMu.Unlock()
	h.upstream.mu.Lock()
	for _, u := range h.upstream.seen {
		fmt.Fprintf(&b, "UPSTREAM %s %s host %s content-length %d\n", u.method, u.uri, u.host, u.length)
		dumpHeader(&b, "  ", u.header)
		fmt.Fprintf(&b, "  body %s\n", dumpBody(u.body))
		dumpHeader(&b, "  trailer ", u.trailer)
	}
	h.upstream.mu.Unlock()
	h.authz.mu.Lock()
	for _, r := range h.authz.reqs {
		fmt.Fprintf(&b, "CHECK\n%s\n", prototext.Format(r))
	}
	h.authz.mu.Unlock()
	h.proc.mu.Lock()
	for i, s := range h.proc.streams {
		fmt.Fprintf(&b, "EXT_PROC STREAM %d\n", i)
		for _, m := range s {
			fmt.Fprintf(&b, "%s\n", prototext.Format(dumpMessage(m)))
		}
	}
	h.proc.mu.Unlock()
	dir := filepath.Join(dumpDir, filepath.Dir(h.t.Name()))
	name := filepath.Base(h.t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Log(err)
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Log(err)
		return
	}
	defer f.Close()
	_, _ = f.WriteString(normalised(b.String()))
}

// dumpMessage is m with its headers sorted (Envoy sends them in arrival
// order, the Go data plane by name) and long bodies cut.
func dumpMessage(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingRequest {
	m = proto.Clone(m).(*extprocv3.ProcessingRequest)
	for _, hm := range []*corev3.HeaderMap{m.GetRequestHeaders().GetHeaders(), m.GetResponseHeaders().GetHeaders(),
		m.GetRequestTrailers().GetTrailers(), m.GetResponseTrailers().GetTrailers()} {
		if hm != nil {
			sort.SliceStable(hm.Headers, func(i, j int) bool { return hm.Headers[i].GetKey() < hm.Headers[j].GetKey() })
		}
	}
	for _, b := range []*extprocv3.HttpBody{m.GetRequestBody(), m.GetResponseBody()} {
		if b != nil && len(b.Body) > 200 {
			b.Body = []byte(fmt.Sprintf("%s... (%d bytes)", b.Body[:200], len(b.Body)))
		}
	}
	return m
}
