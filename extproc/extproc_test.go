package extproc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/inspect"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/filters/request"
	"github.com/custos-dev/custos/names"
)

const cfgYAML = `
connections:
  - name: customers
    upstream: http://127.0.0.1:8081/api/
    hosts: [customers.internal]
`

// memRecorder keeps what it is given; fail makes Record fail.
type memRecorder struct {
	mu   sync.Mutex
	got  []record.Event
	fail bool
}

func (m *memRecorder) Record(_ context.Context, e record.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.got = append(m.got, e)
	return nil
}

func (m *memRecorder) setFail(f bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = f
}

// of returns the events of kind k.
func (m *memRecorder) of(k record.Kind) []record.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []record.Event
	for _, e := range m.got {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

type clients struct {
	authz  authv3.AuthorizationClient
	proc   extprocv3.ExternalProcessorClient
	health healthpb.HealthClient
	rec    *memRecorder
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// pipelineFor builds the default pipeline for yaml with rec as the record
// stage, then lets change replace stages.
func pipelineFor(t testing.TB, yaml string, rec record.Recorder, change func(*Stages)) *Pipeline {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	st, err := DefaultStages(cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	st.Record = rec
	if change != nil {
		change(&st)
	}
	p, err := NewPipeline(cfg, st, discard())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serve starts the services on a loopback port with a real gRPC server.
func serve(t *testing.T) clients { return serveWith(t, cfgYAML, nil) }

func serveWith(t testing.TB, yaml string, change func(*Stages)) clients {
	t.Helper()
	rec := &memRecorder{}
	svc := New(pipelineFor(t, yaml, rec, change), discard())
	g := grpc.NewServer()
	svc.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); g.Stop() })
	return clients{authv3.NewAuthorizationClient(conn), extprocv3.NewExternalProcessorClient(conn), healthpb.NewHealthClient(conn), rec}
}

// routeExt is what Custos' xDS puts on the /customers/ prefix route.
func routeExt() map[string]string {
	return map[string]string{names.ContextConnection: "customers", names.ContextExtProc: "on",
		names.ContextPrefix: "/customers/", names.ContextPrefixRewrite: "/api/"}
}

func checkReq(ext map[string]string, host, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":path": path, ":authority": host, ":method": "GET"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: ext,
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: host, Path: path, Headers: h,
		}},
	}}
}

func TestCheckAllowsConfiguredConnectionAndLeavesVerdict(t *testing.T) {
	c := serve(t)
	resp, err := c.authz.Check(context.Background(), checkReq(routeExt(),
		"127.0.0.1:10000", "/customers/7?expand=1",
		map[string]string{"x-request-id": "req-1", "x-custos-forged": "1", "x-custos-session": "run-9", "x-custos-approval-id": "a1",
			"authorization": "Bearer agent-token", "proxy-authorization": "Basic x"}))
	if err != nil {
		t.Fatal(err)
	}
	if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("denied: %v", resp.GetDeniedResponse().GetBody())
	}
	v, err := verdictFrom(resp.GetDynamicMetadata())
	if err != nil {
		t.Fatal(err)
	}
	if v.RequestID == "req-1" || len(v.RequestID) != 36 {
		t.Fatalf("request id %q: Custos must not adopt the request's x-request-id", v.RequestID)
	}
	if v.Connection != "customers" || v.Path != "/api/7" || v.Method != "GET" || !v.ExtProc || v.Session != "run-9" ||
		v.Principal != "/anonymous" || v.DecisionID == "" || len(v.SessionID) != 32 || v.Hold != nil || v.Denied {
		t.Fatalf("verdict %+v", v)
	}
	ok := resp.GetOkResponse()
	if rm := strings.Join(ok.GetHeadersToRemove(), ","); rm != "authorization,proxy-authorization,x-custos-forged" {
		t.Fatalf("headers_to_remove %s, want the credentials and the forged x-custos-* header", rm)
	}
	if h := ok.GetHeaders(); len(h) != 1 || h[0].GetHeader().GetKey() != "x-request-id" || h[0].GetHeader().GetValue() != v.RequestID {
		t.Fatalf("headers %v, want x-request-id set to Custos' id", h)
	}
	add := ok.GetResponseHeadersToAdd()
	if len(add) != 1 || add[0].GetHeader().GetKey() != names.RequestIDHeader || add[0].GetHeader().GetValue() != v.RequestID {
		t.Fatalf("response_headers_to_add %v", add)
	}
	// An allowed request leaves its decision, whatever route it is on.
	if d := c.rec.of(record.Decided); len(d) != 1 || !d[0].Allow || d[0].RequestID != v.RequestID || d[0].Path != "/api/7" || d[0].Risk != "read" {
		t.Fatalf("decision records %+v", d)
	}
}

func TestCheckRoutesAsTheRouteSays(t *testing.T) {
	c := serve(t)
	for _, tc := range []struct {
		name string
		ext  map[string]string
		host string
		path string
		want string
		proc bool
	}{
		{"prefix route", routeExt(), "h", "/customers/7", "/api/7", true},
		{"exact route", map[string]string{names.ContextConnection: "customers", names.ContextExtProc: "on",
			names.ContextPrefix: "/customers", names.ContextPrefixRewrite: "/api/"}, "h", "/customers", "/api/", true},
		{"host route", map[string]string{names.ContextConnection: "customers", names.ContextExtProc: "on",
			names.ContextPrefix: "/", names.ContextPrefixRewrite: "/api/"}, "customers.internal", "/customers/7", "/api/customers/7", true},
		// Istio's routes carry no context: the sidecar forwards the path as
		// it came, so that is what policy and the record see.
		{"no route context, host with port and case", nil, "Customers.Internal:8443", "/customers/7", "/customers/7", false},
		{"no route context, trailing dot", nil, "customers.internal.", "/customers/7", "/customers/7", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.authz.Check(context.Background(), checkReq(tc.ext, tc.host, tc.path, nil))
			if err != nil {
				t.Fatal(err)
			}
			v, err := verdictFrom(resp.GetDynamicMetadata())
			if err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
				t.Fatalf("status %v, %v", resp.GetStatus(), err)
			}
			if v.Connection != "customers" || v.Path != tc.want || v.ExtProc != tc.proc {
				t.Fatalf("verdict %+v, want path %s", v, tc.want)
			}
		})
	}
}

func TestCheckDeniesWithContractJSONAndRecords(t *testing.T) {
	c := serve(t)
	for _, tc := range []struct {
		name   string
		req    *authv3.CheckRequest
		status int
		code   string
		msg    string
	}{
		{"unconfigured connection", checkReq(map[string]string{names.ContextConnection: "ghost"}, "h", "/ghost/1", nil), 403, CodeForbidden, `"ghost" is not configured`},
		{"unknown host", checkReq(nil, "elsewhere.example", "/x", nil), 403, CodeForbidden, "no configured connection"},
		// ASCII case folding only: "ſ" (U+017F) is not "s" to Envoy.
		{"unicode case fold", checkReq(nil, "cuſtomers.internal", "/x", nil), 403, CodeForbidden, "no configured connection"},
		{"bad session", checkReq(routeExt(), "h", "/customers/1", map[string]string{"x-custos-session": "a b"}), 400, CodeBadRequest, "x-custos-session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(c.rec.of(record.Decided))
			resp, err := c.authz.Check(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if code.Code(resp.GetStatus().GetCode()) == code.Code_OK {
				t.Fatal("allowed")
			}
			body := deniedBody(t, resp, tc.status)
			if body["error"] != tc.code || !strings.Contains(body["message"].(string), tc.msg) || body["request_id"] == "" {
				t.Fatalf("body %v", body)
			}
			// The denial is marked, so the local reply mappers leave it be.
			if md := resp.GetDynamicMetadata().GetFields()[names.DeniedKey]; !md.GetBoolValue() {
				t.Fatalf("denial not marked in metadata: %v", resp.GetDynamicMetadata())
			}
			d := c.rec.of(record.Decided)
			if len(d) != before+1 || d[len(d)-1].Allow || d[len(d)-1].Status != tc.status || d[len(d)-1].RequestID != body["request_id"] {
				t.Fatalf("a denial left no record: %+v", d)
			}
		})
	}
}

// deniedBody checks a denial's status and headers and returns its JSON.
func deniedBody(t *testing.T, resp *authv3.CheckResponse, wantStatus int) map[string]any {
	t.Helper()
	d := resp.GetDeniedResponse()
	if int(d.GetStatus().GetCode()) != wantStatus {
		t.Fatalf("status %d, want %d (%s)", d.GetStatus().GetCode(), wantStatus, d.GetBody())
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("body %q: %v", d.GetBody(), err)
	}
	var ctype, rid string
	for _, h := range d.GetHeaders() {
		switch h.GetHeader().GetKey() {
		case "content-type":
			ctype = h.GetHeader().GetValue()
		case names.RequestIDHeader:
			rid = h.GetHeader().GetValue()
		}
	}
	if ctype != "application/json" || rid != body["request_id"] {
		t.Fatalf("headers: content-type %q, request id %q vs %v", ctype, rid, body["request_id"])
	}
	return body
}

// tokenSubject is a test identity stage: the bearer token is the subject.
type tokenSubject struct{}

func (tokenSubject) Verify(_ context.Context, c identity.Credentials) (identity.Principal, error) {
	if c.Bearer == "" {
		return identity.Principal{}, &identity.Error{Check: "missing"}
	}
	return identity.Principal{Issuer: "https://issuer.test", Subject: c.Bearer, Kind: identity.KindWorkload}, nil
}

func TestSessionsAreNamespacedByPrincipal(t *testing.T) {
	c := serveWith(t, cfgYAML, func(s *Stages) { s.Identity = tokenSubject{} })
	session := func(token, name string) Verdict {
		t.Helper()
		h := map[string]string{"authorization": "Bearer " + token}
		if name != "" {
			h[names.SessionHeader] = name
		}
		resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/1", h))
		if err != nil {
			t.Fatal(err)
		}
		v, err := verdictFrom(resp.GetDynamicMetadata())
		if err != nil {
			t.Fatalf("%s/%s: %v", token, name, err)
		}
		return v
	}
	a, b, a2 := session("agent-a", "nightly"), session("agent-b", "nightly"), session("agent-a", "nightly")
	if a.Principal != "https://issuer.test/agent-a" || b.Principal != "https://issuer.test/agent-b" {
		t.Fatalf("principals %q %q", a.Principal, b.Principal)
	}
	if a.SessionID == b.SessionID {
		t.Fatal("two principals naming the same session share it")
	}
	if a.SessionID != a2.SessionID || a.Session != "nightly" {
		t.Fatal("the same principal and session name gave two sessions")
	}
	if d := session("agent-a", ""); d.SessionID == a.SessionID || d.Session != "default" {
		t.Fatalf("no session named: %+v", d)
	}
	if _, _, ok := sessionID("", "x", strings.Repeat("s", 129)); ok {
		t.Fatal("an overlong session name was accepted")
	}
	// A token that does not verify is 401 with the check that failed.
	resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if body := deniedBody(t, resp, 401); body["error"] != CodeUnauthenticated || body["message"] != "token missing" {
		t.Fatalf("body %v", body)
	}
}

// panicking is an inspector that panics on one path, as a parser might on
// hostile input.
type panicking struct{}

func (panicking) Inspect(ctx context.Context, r *request.Request) (inspect.Action, error) {
	if strings.Contains(r.Path, "boom") {
		panic("parser fell over")
	}
	return inspect.HTTP{}.Inspect(ctx, r)
}

func TestStagePanicIs503AndTheNextRequestIsServed(t *testing.T) {
	c := serveWith(t, cfgYAML, func(s *Stages) { s.Inspect = panicking{} })
	resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/boom", nil))
	if err != nil {
		t.Fatal(err)
	}
	if body := deniedBody(t, resp, 503); body["error"] != CodeUnavailable {
		t.Fatalf("body %v", body)
	}
	resp, err = c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/1", nil))
	if err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("the next request: %v %v", resp.GetStatus(), err)
	}
	if d := c.rec.of(record.Decided); len(d) != 2 || d[0].Allow || d[0].Status != 503 || !d[1].Allow {
		t.Fatalf("records %+v", d)
	}
}

func TestCheckFailsClosedWhenTheDecisionCannotBeRecorded(t *testing.T) {
	c := serve(t)
	c.rec.setFail(true)
	resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	if body := deniedBody(t, resp, 503); body["error"] != CodeUnavailable {
		t.Fatalf("body %v", body)
	}
}

func verdictMetadata(t testing.TB, c clients) *corev3.Metadata {
	t.Helper()
	resp, err := c.authz.Check(context.Background(), checkReq(routeExt(), "h", "/customers/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{names.VerdictNamespace: resp.GetDynamicMetadata()}}
}

// openDecided checks a request, opens its ext_proc stream and gets the
// request headers answered, as Envoy would; it returns the stream and the
// request id Check chose. mode is the response body mode Envoy announces.
func openDecided(t *testing.T, c clients, mode procfilterv3.ProcessingMode_BodySendMode) (extprocv3.ExternalProcessor_ProcessClient, string) {
	t.Helper()
	md := verdictMetadata(t, c)
	v, err := verdictFrom(md.GetFilterMetadata()[names.VerdictNamespace])
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.proc.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first := requestHeaders(md)
	first.ProtocolConfig = &extprocv3.ProtocolConfiguration{ResponseBodyMode: mode}
	if err := s.Send(first); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil || r.GetRequestHeaders() == nil {
		t.Fatalf("request headers reply %v, %v", r, err)
	}
	return s, v.RequestID
}

func requestHeaders(md *corev3.Metadata) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{
		MetadataContext: md,
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers:     &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":path", RawValue: []byte("/customers/1")}}},
			EndOfStream: true,
		}},
	}
}

func responseHeaders(status string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers:     &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte(status)}}},
		EndOfStream: eos,
	}}}
}

func TestProcessFailsClosedWithoutVerdict(t *testing.T) {
	c := serve(t)
	for name, md := range map[string]*corev3.Metadata{
		"no metadata":     nil,
		"other namespace": {FilterMetadata: map[string]*structpb.Struct{"other": {}}},
		"partial verdict": {FilterMetadata: map[string]*structpb.Struct{names.VerdictNamespace: {Fields: map[string]*structpb.Value{"request_id": structpb.NewStringValue("x")}}}},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := c.proc.Process(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(requestHeaders(md)); err != nil {
				t.Fatal(err)
			}
			_, err = s.Recv()
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("got %v, want a FailedPrecondition error (never OK, never a reply)", err)
			}
		})
	}
}

func TestProcessAddsRequestIDAndRecords(t *testing.T) {
	c := serve(t)
	s, rid := openDecided(t, c, procfilterv3.ProcessingMode_NONE)
	if err := s.Send(responseHeaders("201", false)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	set := r.GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders()
	if len(set) != 1 || set[0].GetHeader().GetKey() != names.RequestIDHeader || string(set[0].GetHeader().GetRawValue()) != rid ||
		set[0].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		t.Fatalf("response header mutation %v", set)
	}
	_ = s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after half-close: %v, want the server to end the stream normally", err)
	}
	got := c.rec.of(record.Completed)
	if len(got) != 1 || got[0].RequestID != rid || got[0].Status != 201 || got[0].Path != "/api/1" || len(c.rec.of(record.Aborted)) != 0 {
		t.Fatalf("recorded %+v", got)
	}
}

func TestProcessRecordsAResponseWithABodyOnceAfterItsBody(t *testing.T) {
	c := serve(t)
	s, rid := openDecided(t, c, procfilterv3.ProcessingMode_BUFFERED)
	if err := s.Send(responseHeaders("200", false)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if got := c.rec.of(record.Completed); len(got) != 0 {
		t.Fatalf("recorded at the headers, before the body: %+v", got)
	}
	body := func(b string, eos bool) *extprocv3.ProcessingRequest {
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos}}}
	}
	for _, m := range []*extprocv3.ProcessingRequest{body("{\"a\":", false), body("1}", true)} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil || r.GetResponseBody() == nil {
			t.Fatalf("body reply %v %v", r, err)
		}
	}
	_ = s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after half-close: %v", err)
	}
	got := c.rec.of(record.Completed)
	if len(got) != 1 || got[0].RequestID != rid || got[0].Status != 200 || len(c.rec.of(record.Aborted)) != 0 {
		t.Fatalf("recorded %+v", got)
	}
}

func TestProcessEndedByEnvoyIsRecordedAsAborted(t *testing.T) {
	c := serve(t)
	s, _ := openDecided(t, c, procfilterv3.ProcessingMode_NONE)
	_ = s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("io.EOF from Envoy must end the stream normally, got %v", err)
	}
	if got := c.rec.of(record.Aborted); len(got) != 1 || len(c.rec.of(record.Completed)) != 0 {
		t.Fatalf("recorded %+v", got)
	}
}

func TestProcessFailsWhenTheRecordFails(t *testing.T) {
	c := serve(t)
	s, _ := openDecided(t, c, procfilterv3.ProcessingMode_NONE)
	c.rec.setFail(true)
	if err := s.Send(responseHeaders("200", true)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("got %v, want Unavailable: no evidence, no response", err)
	}
}

func TestProcessRefusesMessagesBeforeHeaders(t *testing.T) {
	c := serve(t)
	s, err := c.proc.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("got %v, want FailedPrecondition", err)
	}
}

// Envoy sends its own replies (a denial from Check, a 400 for a refused
// path) through ext_proc's response phase, on a stream that never saw the
// request: they pass unchanged, and a request phase after them is refused.
func TestProcessPassesEnvoysLocalReplies(t *testing.T) {
	c := serve(t)
	s, err := c.proc.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(responseHeaders("403", false)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil || r.GetResponseHeaders() == nil || r.GetResponseHeaders().GetResponse().GetHeaderMutation() != nil {
		t.Fatalf("reply %v %v, want the headers unchanged", r, err)
	}
	if err := s.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(`{"error":"forbidden"}`), EndOfStream: true}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || r.GetResponseBody().GetResponse().GetBodyMutation() != nil {
		t.Fatalf("body reply %v %v, want it unchanged", r, err)
	}
	if err := s.Send(requestHeaders(verdictMetadata(t, c))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("request headers after a local reply: %v, want InvalidArgument", err)
	}
	if n := len(c.rec.of(record.Completed)) + len(c.rec.of(record.Aborted)); n != 0 {
		t.Fatalf("a local reply's stream recorded %d exchanges", n)
	}
}

func TestHealthServes(t *testing.T) {
	c := serve(t)
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization", "envoy.service.ext_proc.v3.ExternalProcessor"} {
		r, err := c.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, r, err)
		}
	}
}

func TestCheckForwardsTokenOnlyWhenTheConnectionSaysSo(t *testing.T) {
	cfg, err := config.Parse([]byte(`
connections:
  - name: plain
    upstream: http://127.0.0.1:1
  - name: passthrough
    upstream: http://127.0.0.1:2
    forward_token: true
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conn string
		want string
	}{{"plain", "authorization"}, {"passthrough", ""}} {
		c, _ := cfg.Connection(tc.conn)
		got := strings.Join(headersToRemove(&c, map[string]string{"authorization": "Bearer t"}), ",")
		if got != tc.want {
			t.Errorf("%s: headers_to_remove %q, want %q", tc.conn, got, tc.want)
		}
	}
}

func TestPinEncodingsKeepsOnlyWhatTheEngineReads(t *testing.T) {
	for in, want := range map[string]string{
		"br, gzip;q=0.5, zstd": "gzip",
		"gzip, deflate, br":    "gzip, deflate",
		"br":                   "identity",
		"*":                    "identity",
		"GZIP":                 "gzip",
		"gzip;q=0, deflate":    "deflate",
		"":                     "identity",
	} {
		if got := pinEncodings(in); got != want {
			t.Errorf("pinEncodings(%q) = %q, want %q", in, got, want)
		}
	}
}
