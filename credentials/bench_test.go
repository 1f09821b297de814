package credentials_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/custos-dev/custos/credentials"
	"github.com/custos-dev/custos/credentials/azuritetest"
	"github.com/custos-dev/custos/devissuer"
)

// benchRequest is a typical Blob request as an SDK sends it.
func benchRequest() credentials.Outgoing {
	return credentials.Outgoing{
		Method: "PUT", Scheme: "https", Host: "acct.blob.core.windows.net",
		Path: "/container/dir/blob%20name.json", RawQuery: "timeout=30",
		Headers: map[string]string{
			"content-length":         "1024",
			"content-type":           "application/json",
			"user-agent":             "azsdk-go-azblob/v1.8.3 (go1.26.8; linux)",
			"x-ms-blob-type":         "BlockBlob",
			"x-ms-client-request-id": "3c0f6f4e-8d3b-4e35-9d2a-0b7b5c5f8a11",
			"x-ms-meta-owner":        "custos",
			"x-ms-version":           "2026-12-06",
			"accept":                 "application/xml",
		},
	}
}

// passThrough is the baseline: a connection that forwards the agent's
// token, where Check changes nothing.
type passThrough struct{ credentials.Injector }

func (passThrough) Inject(context.Context, credentials.Outgoing) (credentials.Mutation, error) {
	return credentials.Mutation{}, nil
}

func benchInjectors(b *testing.B) map[string]credentials.Injector {
	keyFile := writeFile(b, "k", azuritetest.Key)
	o := credentials.Options{}
	c := &clock{}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	b.Cleanup(srv.Close)
	is, err := devissuer.New(devissuer.Options{URL: srv.URL, Now: c.now})
	if err != nil {
		b.Fatal(err)
	}
	mux.Handle("/", is)
	return map[string]credentials.Injector{
		"passthrough":     passThrough{},
		"sharedkey-blob":  mustNew(b, credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "acct", KeyFile: keyFile}}, o),
		"sharedkey-table": mustNew(b, credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "acct", KeyFile: keyFile, Service: "table"}}, o),
		"sas":             mustNew(b, credentials.Spec{SAS: &credentials.SAS{TokenFile: writeFile(b, "s", "sv=2025-11-05&ss=b&srt=sco&sp=rl&se=2030-01-01T00:00:00Z&sig=abc%2Bdef%3D")}}, o),
		"bearer":          mustNew(b, credentials.Spec{Bearer: &credentials.Bearer{TokenFile: writeFile(b, "t", "eyJhbGciOiJSUzI1NiJ9.e30.sig")}}, o),
		"oauth-cache-hit": mustNew(b, credentials.Spec{OAuthClientCredentials: &credentials.OAuthClientCredentials{
			TokenURL: srv.URL + devissuer.TokenPath, ClientID: "custos",
			ClientSecretFile: writeFile(b, "cs", is.Secret()), Scope: "https://storage.azure.com/.default",
		}}, o),
	}
}

// BenchmarkInject: the cost of one Inject per kind, beside the
// pass-through baseline (the token cache warmed first).
func BenchmarkInject(b *testing.B) {
	injs := benchInjectors(b)
	req := benchRequest()
	for _, name := range []string{"passthrough", "sharedkey-blob", "sharedkey-table", "sas", "bearer", "oauth-cache-hit"} {
		inj := injs[name]
		if _, err := inj.Inject(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				if _, err := inj.Inject(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInjectParallel: the same under concurrent load (the secret
// and token caches are read with atomic loads).
func BenchmarkInjectParallel(b *testing.B) {
	injs := benchInjectors(b)
	req := benchRequest()
	for _, name := range []string{"passthrough", "sharedkey-blob", "oauth-cache-hit"} {
		inj := injs[name]
		if _, err := inj.Inject(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := inj.Inject(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkProxyHop: one request through the loopback injecting proxy to a
// loopback upstream, pass-through against SharedKey signing: the added
// latency of injection on a whole HTTP hop.
func BenchmarkProxyHop(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	b.Cleanup(up.Close)
	injs := benchInjectors(b)
	for _, name := range []string{"passthrough", "sharedkey-blob"} {
		b.Run(name, func(b *testing.B) {
			proxy, _ := startProxy(b, up.URL, injs[name], hooks{})
			srv := proxy.URL
			client := &http.Client{Timeout: 10 * time.Second}
			b.ReportAllocs()
			for b.Loop() {
				req, _ := http.NewRequest("GET", srv+"/acct/container?restype=container&comp=list", nil)
				req.Header.Set("x-ms-version", "2026-12-06")
				req.Header.Set("Authorization", agentToken)
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
