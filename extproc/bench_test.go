package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/custos-dev/custos/filters/identity/identitytest"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/names"

	"github.com/custos-dev/custos/bench/latency"
)

// nopRecorder keeps the benchmarks about deciding, not logging.
type nopRecorder struct{}

func (nopRecorder) Record(context.Context, record.Event) error { return nil }

// BenchmarkCheck decides one request with the connection index at 1, 100
// and 1,000 connections: by the route's context (Custos' routes) and by
// :authority (Istio), for the last connection configured.
func BenchmarkCheck(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		svc := New(pipelineFor(b, manyConnections(n), nopRecorder{}, nil), discard())
		last := fmt.Sprintf("c%d", n-1)
		for _, tc := range []struct {
			name string
			req  *authv3.CheckRequest
		}{
			{"route", checkReq(map[string]string{names.ContextConnection: last, names.ContextExtProc: "on",
				names.ContextPrefix: "/" + last + "/", names.ContextPrefixRewrite: "/base/"}, "127.0.0.1:10000", "/"+last+"/7?x=1",
				map[string]string{"user-agent": "bench", "accept": "application/json"})},
			{"host", checkReq(nil, last+".internal:8443", "/7", map[string]string{"user-agent": "bench", "accept": "application/json"})},
		} {
			b.Run(fmt.Sprintf("connections=%d/%s", n, tc.name), func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				for b.Loop() {
					resp, err := svc.Check(ctx, tc.req)
					if err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
						b.Fatalf("%v %v", resp.GetStatus(), err)
					}
				}
			})
		}
	}
}

// BenchmarkProcessStream is one ext_proc stream over loopback gRPC, as Envoy
// drives it for a request without bodies: open, request headers, response
// headers, half-close.
func BenchmarkProcessStream(b *testing.B) {
	c := serveWith(b, cfgYAML, func(s *Stages) { s.Record = nopRecorder{} })
	md := verdictMetadata(b, c)
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		s, err := c.proc.Process(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Send(requestHeaders(md)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		if err := s.Send(responseHeaders("200", true)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			b.Fatal(err)
		}
		_ = s.CloseSend()
		if _, err := s.Recv(); !errors.Is(err, io.EOF) {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckWithIdentity decides a request carrying an Entra-shaped
// token from a configured issuer on loopback, with the verified-token cache
// warm (the common case: an agent reuses its token for an hour).
func BenchmarkCheckWithIdentity(b *testing.B) {
	issuer := identitytest.New(b, "/tenant")
	key := issuer.AddKey(b, jose.RS256)
	yaml := cfgYAML + "identity:\n  issuers:\n    - issuer: " + issuer.URL + "\n      audiences: [" + identitytest.DefaultAudience + "]\n"
	svc := New(pipelineFor(b, yaml, nopRecorder{}, nil), discard())
	token := issuer.Token(b, key, map[string]any{"oid": "etl", "idtyp": "app", "roles": []string{"Pipeline.Read"}, "groups": []string{"g1", "g2"}})
	req := checkReq(routeExt(), "127.0.0.1:10000", "/customers/7", map[string]string{"authorization": "Bearer " + token})
	ctx := context.Background()
	if resp, err := svc.Check(ctx, req); err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		b.Fatalf("%v %v", resp.GetDeniedResponse().GetBody(), err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if resp, err := svc.Check(ctx, req); err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckWithIdentityAndPolicy is Check with a verified token (warm
// cache) and the default bundle deciding, the path every request takes in
// production: evaluated by OPA every time (decision_cache: 0) and found in
// the decision cache, beside BenchmarkCheckWithIdentity
// (allow-by-connection) as the baseline.
func BenchmarkCheckWithIdentityAndPolicy(b *testing.B) {
	issuer := identitytest.New(b, "/tenant")
	key := issuer.AddKey(b, jose.RS256)
	token := issuer.Token(b, key, map[string]any{"oid": "etl", "idtyp": "app", "groups": []string{"customers-readers"}})
	for _, tc := range []struct{ name, cache string }{{"evaluated", "0"}, {"cached", "4096"}} {
		b.Run(tc.name, func(b *testing.B) {
			yaml := cfgYAML + "identity:\n  issuers:\n    - issuer: " + issuer.URL + "\n      audiences: [" + identitytest.DefaultAudience + "]\n" +
				"policy:\n  bundle: builtin:default\n  poll_interval: 1h\n  decision_cache: " + tc.cache + "\n"
			svc := New(pipelineFor(b, yaml, nopRecorder{}, nil), discard())
			req := checkReq(routeExt(), "127.0.0.1:10000", "/customers/7", map[string]string{"authorization": "Bearer " + token})
			ctx := context.Background()
			if resp, err := svc.Check(ctx, req); err != nil || code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
				b.Fatalf("%v %v", resp.GetDeniedResponse().GetBody(), err)
			}
			latency.Measure(b, func() error {
				resp, err := svc.Check(ctx, req)
				if err == nil && code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
					err = fmt.Errorf("check answered %v", resp.GetStatus())
				}
				return err
			})
		})
	}
}
