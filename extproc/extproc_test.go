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
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/xds"
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
	got  []record.Exchange
	fail bool
}

func (m *memRecorder) Record(_ context.Context, e record.Exchange) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.got = append(m.got, e)
	return nil
}

func (m *memRecorder) all() []record.Exchange {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]record.Exchange(nil), m.got...)
}

type clients struct {
	authz  authv3.AuthorizationClient
	proc   extprocv3.ExternalProcessorClient
	health healthpb.HealthClient
	rec    *memRecorder
}

// serve starts the services on a loopback port with a real gRPC server.
func serve(t *testing.T) clients {
	t.Helper()
	cfg, err := config.Parse([]byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	rec := &memRecorder{}
	svc := New(cfg, rec, slog.New(slog.NewTextHandler(io.Discard, nil)))
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

func TestCheckAllowsConfiguredConnectionAndLeavesDecision(t *testing.T) {
	c := serve(t)
	resp, err := c.authz.Check(context.Background(), checkReq(
		map[string]string{xds.ContextConnection: "customers", xds.ContextExtProc: "on"},
		"127.0.0.1:10000", "/customers/7?expand=1",
		map[string]string{"x-request-id": "req-1", "x-custos-forged": "1", "x-custos-session": "run-9", "x-custos-approval-id": "a1",
			"authorization": "Bearer agent-token", "proxy-authorization": "Basic x"}))
	if err != nil {
		t.Fatal(err)
	}
	if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("denied: %v", resp.GetDeniedResponse().GetBody())
	}
	d, err := decisionFrom(resp.GetDynamicMetadata())
	if err != nil {
		t.Fatal(err)
	}
	if d.RequestID == "req-1" || len(d.RequestID) != 36 {
		t.Fatalf("request id %q: Custos must not adopt the request's x-request-id", d.RequestID)
	}
	want := decision{RequestID: d.RequestID, Connection: "customers", Path: "/api/7", Method: "GET", ExtProc: true, SessionID: d.SessionID}
	if d != want {
		t.Fatalf("decision %+v, want %+v", d, want)
	}
	ok := resp.GetOkResponse()
	if rm := strings.Join(ok.GetHeadersToRemove(), ","); rm != "authorization,proxy-authorization,x-custos-forged" {
		t.Fatalf("headers_to_remove %s, want the credentials and the forged x-custos-* header", rm)
	}
	if h := ok.GetHeaders(); len(h) != 1 || h[0].GetHeader().GetKey() != "x-request-id" || h[0].GetHeader().GetValue() != d.RequestID {
		t.Fatalf("headers %v, want x-request-id set to Custos' id", h)
	}
	add := ok.GetResponseHeadersToAdd()
	if len(add) != 1 || add[0].GetHeader().GetKey() != RequestIDHeader || add[0].GetHeader().GetValue() != d.RequestID {
		t.Fatalf("response_headers_to_add %v", add)
	}
}

func TestCheckFindsConnectionByAuthority(t *testing.T) {
	c := serve(t)
	resp, err := c.authz.Check(context.Background(), checkReq(nil, "Customers.Internal:8443", "/customers/7", nil))
	if err != nil {
		t.Fatal(err)
	}
	d, err := decisionFrom(resp.GetDynamicMetadata())
	if err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("status %v, %v", resp.GetStatus(), err)
	}
	// Routed by host: the path is not stripped, only based on the upstream's.
	if d.Connection != "customers" || d.Path != "/api/customers/7" || d.ExtProc {
		t.Fatalf("decision %+v", d)
	}
	if d.RequestID == "" {
		t.Fatal("no request id generated without x-request-id")
	}
}

func TestCheckDeniesWithContractJSON(t *testing.T) {
	c := serve(t)
	for _, tc := range []struct {
		name   string
		req    *authv3.CheckRequest
		status int
		code   string
		msg    string
	}{
		{"unconfigured connection", checkReq(map[string]string{xds.ContextConnection: "ghost"}, "h", "/ghost/1", nil), 403, CodeForbidden, `"ghost" is not configured`},
		{"unknown host", checkReq(nil, "elsewhere.example", "/x", nil), 403, CodeForbidden, "no configured connection"},
		{"bad session", checkReq(map[string]string{xds.ContextConnection: "customers"}, "h", "/customers/1", map[string]string{"x-custos-session": "a b"}), 400, CodeBadRequest, "x-custos-session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.authz.Check(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if code.Code(resp.GetStatus().GetCode()) == code.Code_OK {
				t.Fatal("allowed")
			}
			d := resp.GetDeniedResponse()
			if int(d.GetStatus().GetCode()) != tc.status {
				t.Fatalf("status %d, want %d", d.GetStatus().GetCode(), tc.status)
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
				t.Fatalf("body %q: %v", d.GetBody(), err)
			}
			if body["error"] != tc.code || !strings.Contains(body["message"].(string), tc.msg) || body["request_id"] == "" {
				t.Fatalf("body %v", body)
			}
			var ctype, rid string
			for _, h := range d.GetHeaders() {
				switch h.GetHeader().GetKey() {
				case "content-type":
					ctype = h.GetHeader().GetValue()
				case RequestIDHeader:
					rid = h.GetHeader().GetValue()
				}
			}
			if ctype != "application/json" || rid != body["request_id"] {
				t.Fatalf("headers: content-type %q, request id %q vs %v", ctype, rid, body["request_id"])
			}
		})
	}
}

func TestSessionsAreNamespacedByPrincipal(t *testing.T) {
	a, _ := sessionID("https://issuer", "agent-a", "nightly")
	b, _ := sessionID("https://issuer", "agent-b", "nightly")
	a2, _ := sessionID("https://issuer", "agent-a", "nightly")
	if a == b {
		t.Fatal("two principals naming the same session share it")
	}
	if a != a2 {
		t.Fatal("the same principal and session name gave two sessions")
	}
	if _, ok := sessionID("", "x", strings.Repeat("s", 129)); ok {
		t.Fatal("an overlong session name was accepted")
	}
}

func decisionMetadata(t *testing.T, c clients) *corev3.Metadata {
	t.Helper()
	resp, err := c.authz.Check(context.Background(), checkReq(map[string]string{xds.ContextConnection: "customers", xds.ContextExtProc: "on"},
		"h", "/customers/1", nil))
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{xds.ExtAuthzFilter: resp.GetDynamicMetadata()}}
}

// openDecided checks a request, opens its ext_proc stream and gets the
// request headers answered, as Envoy would; it returns the stream and the
// request id Check chose.
func openDecided(t *testing.T, c clients) (extprocv3.ExternalProcessor_ProcessClient, string) {
	t.Helper()
	md := decisionMetadata(t, c)
	d, err := decisionFrom(md.GetFilterMetadata()[xds.ExtAuthzFilter])
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.proc.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(requestHeaders(md)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil || r.GetRequestHeaders() == nil {
		t.Fatalf("request headers reply %v, %v", r, err)
	}
	return s, d.RequestID
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

func responseHeaders(status string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte(status)}}},
	}}}
}

func TestProcessFailsClosedWithoutDecision(t *testing.T) {
	c := serve(t)
	for name, md := range map[string]*corev3.Metadata{
		"no metadata":      nil,
		"other namespace":  {FilterMetadata: map[string]*structpb.Struct{"other": {}}},
		"partial decision": {FilterMetadata: map[string]*structpb.Struct{xds.ExtAuthzFilter: {Fields: map[string]*structpb.Value{mdRequestID: structpb.NewStringValue("x")}}}},
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
	s, rid := openDecided(t, c)
	if err := s.Send(responseHeaders("201")); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	set := r.GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders()
	if len(set) != 1 || set[0].GetHeader().GetKey() != RequestIDHeader || string(set[0].GetHeader().GetRawValue()) != rid ||
		set[0].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		t.Fatalf("response header mutation %v", set)
	}
	_ = s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after half-close: %v, want the server to end the stream normally", err)
	}
	got := c.rec.all()
	if len(got) != 1 || got[0].RequestID != rid || got[0].Status != 201 || got[0].Outcome != record.Completed || got[0].Path != "/api/1" {
		t.Fatalf("recorded %+v", got)
	}
}

func TestProcessEndedByEnvoyIsRecordedAsAborted(t *testing.T) {
	c := serve(t)
	s, _ := openDecided(t, c)
	_ = s.CloseSend()
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("io.EOF from Envoy must end the stream normally, got %v", err)
	}
	got := c.rec.all()
	if len(got) != 1 || got[0].Outcome != record.Aborted {
		t.Fatalf("recorded %+v", got)
	}
}

func TestProcessFailsWhenTheRecordFails(t *testing.T) {
	c := serve(t)
	c.rec.fail = true
	s, _ := openDecided(t, c)
	if err := s.Send(responseHeaders("200")); err != nil {
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
	if err := s.Send(responseHeaders("200")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("got %v, want FailedPrecondition", err)
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
		got := strings.Join(headersToRemove(c, map[string]string{"authorization": "Bearer t"}), ",")
		if got != tc.want {
			t.Errorf("%s: headers_to_remove %q, want %q", tc.conn, got, tc.want)
		}
	}
}
