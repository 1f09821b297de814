package identity_test

import (
	"context"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/identity/identitytest"
)

// BenchmarkVerify measures verification of an Entra-sized token against a
// loopback issuer whose keys are already known: cold is the first sight of
// a token (the token cache off, so every iteration verifies in full:
// parse, signature, claims, principal), warm is a cache hit. The goal for
// warm is under 5 µs.
//
//	go test -run '^$' -bench Verify -benchmem ./filters/identity/
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		for _, mode := range []string{"cold", "warm", "warm-parallel"} {
			b.Run(mode+"/"+string(alg), func(b *testing.B) {
				is := identitytest.New(b, "/bench")
				k := is.AddKey(b, alg)
				o := identity.Options{}
				if mode == "cold" {
					o.CacheSize = -1
				}
				v, err := identity.NewOIDC(config.Identity{Issuers: []config.Issuer{{Issuer: is.URL,
					Audiences: []string{identitytest.DefaultAudience}, ClockSkew: config.DefaultClockSkew,
					Algorithms: config.DefaultAlgorithms, Claims: config.ClaimNames{Groups: "groups", Roles: "roles"}}}}, o)
				if err != nil {
					b.Fatal(err)
				}
				c := identity.Credentials{Bearer: is.Token(b, k, map[string]any{
					"oid": "22222222-0000-0000-0000-0000000000b1", "appid": "11111111-0000-0000-0000-00000000c11d",
					"idtyp": "app", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "roles": []string{"Pipeline.Read", "Pipeline.Write"},
					"groups":    []string{"0b7c8b5e-4a43-4a7e-8f8a-6f6f0e3b2c11", "55555555-0000-0000-0000-000000000000"},
					"xms_mirid": "/subscriptions/SUB/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nightly-etl",
				})}
				ctx := context.Background()
				// Twice: the first discovers the issuer and fetches its keys.
				for range 2 {
					if _, err := v.Verify(ctx, c); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(len(c.Bearer)))
				b.ReportAllocs()
				if mode == "warm-parallel" {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := v.Verify(ctx, c); err != nil {
								b.Error(err)
								return
							}
						}
					})
					return
				}
				for b.Loop() {
					if _, err := v.Verify(ctx, c); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
