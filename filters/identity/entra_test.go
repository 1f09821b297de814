package identity_test

import (
	"reflect"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/identity"
	"github.com/custos-dev/custos/filters/identity/identitytest"
)

const (
	tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	v1Iss  = "https://sts.windows.net/" + tenant + "/"
	v2Iss  = "https://login.microsoftonline.com/" + tenant + "/v2.0"
	apiID  = "6e6c2c44-7a3b-4c1d-9d55-0c1f1bb1a001" // Custos' API client id (v2 aud)
	group  = "0b7c8b5e-4a43-4a7e-8f8a-6f6f0e3b2c11"
)

// entra runs Entra ID's two issuers on loopback, as Entra serves them: the
// v1 issuer's discovery document is not under its issuer URL (hence
// discovery_url), the v2 one is configured with discovery_url too because
// its real URL is not loopback.
type entra struct {
	clock  *clock
	v1, v2 *identitytest.Issuer
	k1, k2 *identitytest.Key
	v      *identity.OIDC
}

func newEntra(t *testing.T) *entra {
	t.Helper()
	e := &entra{clock: newClock()}
	e.v1 = identitytest.New(t, "/"+tenant, identitytest.WithIssuer(v1Iss), identitytest.WithClock(e.clock.Now))
	e.v2 = identitytest.New(t, "/"+tenant+"/v2.0", identitytest.WithIssuer(v2Iss), identitytest.WithClock(e.clock.Now))
	e.k1, e.k2 = e.v1.AddKey(t, jose.RS256), e.v2.AddKey(t, jose.RS256)
	e.v = newVerifier(t, e.clock, identity.Options{},
		config.Issuer{Issuer: v1Iss, DiscoveryURL: e.v1.DiscoveryURL, Audiences: []string{"api://custos"}},
		config.Issuer{Issuer: v2Iss, DiscoveryURL: e.v2.DiscoveryURL, Audiences: []string{apiID},
			GroupNames: map[string]string{group: "payments-approvers"}})
	return e
}

// v1 is the access token of a user-assigned managed identity (ENTRA.md).
func (e *entra) managedIdentity(t *testing.T, extra map[string]any) string {
	c := map[string]any{
		"aud": "api://custos", "appid": "11111111-0000-0000-0000-00000000c11d", "appidacr": "2",
		"idp": v1Iss, "idtyp": "app", "oid": "22222222-0000-0000-0000-0000000000b1", "sub": "22222222-0000-0000-0000-0000000000b1",
		"tid": tenant, "roles": []string{"Pipeline.Read"}, "ver": "1.0",
		"xms_mirid": "/subscriptions/SUB/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nightly-etl",
	}
	for k, v := range extra {
		c[k] = v
	}
	return e.v1.Token(t, e.k1, c)
}

// v2user is a signed-in user's (an approver's) v2 access token.
func (e *entra) v2user(t *testing.T, extra map[string]any) string {
	c := map[string]any{
		"aud": apiID, "azp": "33333333-0000-0000-0000-0000000000a9", "azpacr": "0", "name": "Dana Reviewer",
		"oid": "44444444-0000-0000-0000-00000000da2a", "preferred_username": "dana@bank.example", "scp": "Approvals.Write",
		"sub": "pairwise-subject-of-dana", "tid": tenant, "groups": []string{group, "55555555-0000-0000-0000-000000000000"},
		"roles": []string{"Custos.Approver"}, "amr": []string{"pwd", "mfa"}, "ver": "2.0",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return e.v2.Token(t, e.k2, c)
}

// agent is an autonomous agent identity's app token (Entra Agent ID).
func (e *entra) agent(t *testing.T, extra map[string]any) string {
	c := map[string]any{
		"aud": "api://custos", "appid": "66666666-0000-0000-0000-0000000a9e17", "appidacr": "2", "idtyp": "app",
		"oid": "77777777-0000-0000-0000-0000000a9e17", "sub": "77777777-0000-0000-0000-0000000a9e17", "tid": tenant, "ver": "1.0",
		"xms_act_fct": "3 9 11", "xms_sub_fct": "9 3 11", "xms_tnt_fct": "3 9", "xms_idrel": "7 10",
		"xms_par_app_azp": "88888888-0000-0000-0000-00000b1ue9r1",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return e.v1.Token(t, e.k1, c)
}

func TestEntraManagedIdentityV1(t *testing.T) {
	e := newEntra(t)
	p := mustVerify(t, e.v, e.managedIdentity(t, nil))
	want := identity.Principal{
		Issuer: v1Iss, Subject: "22222222-0000-0000-0000-0000000000b1", Kind: identity.KindWorkload,
		App: "11111111-0000-0000-0000-00000000c11d", Roles: []string{"Pipeline.Read"},
		Claims: map[string]any{"tid": tenant, "ver": "1.0", "idtyp": "app", "appidacr": "2", "idp": v1Iss,
			"xms_mirid": "/subscriptions/SUB/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nightly-etl"},
	}
	want.Session = p.Session
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("principal\n%+v\nwant\n%+v", p, want)
	}
	if !strings.HasPrefix(p.Session, "iat-") || len(p.Session) != 36 {
		t.Fatalf("session %q: no sid or jti, so a hash of issuer, subject and iat", p.Session)
	}
	// Without idtyp (an app registration that does not ask for it) and
	// without xms_mirid, no scp still means an app token.
	p = mustVerify(t, e.v, e.managedIdentity(t, map[string]any{"idtyp": "", "xms_mirid": "", "jti": "j-1"}))
	if p.Kind != identity.KindWorkload || p.Session != "j-1" {
		t.Fatalf("%+v", p)
	}
}

func TestEntraUserV2(t *testing.T) {
	e := newEntra(t)
	p := mustVerify(t, e.v, e.v2user(t, map[string]any{"sid": "0012a9f0-8a3c-4b3f-b1d5-57c5d0f3a001"}))
	if p.Issuer != v2Iss || p.Subject != "44444444-0000-0000-0000-00000000da2a" || p.Kind != identity.KindHuman ||
		p.App != "33333333-0000-0000-0000-0000000000a9" || p.GroupsUnknown ||
		!reflect.DeepEqual(p.Groups, []string{group, "55555555-0000-0000-0000-000000000000"}) ||
		!reflect.DeepEqual(p.GroupNames, []string{"payments-approvers"}) ||
		!reflect.DeepEqual(p.Roles, []string{"Custos.Approver"}) || p.Actor != nil {
		t.Fatalf("principal %+v", p)
	}
	if p.Claims["preferred_username"] != "dana@bank.example" || p.Claims["scp"] != "Approvals.Write" ||
		!reflect.DeepEqual(p.Claims["amr"], []any{"pwd", "mfa"}) || p.Claims["sub"] != nil {
		t.Fatalf("claims %v", p.Claims)
	}
	if p.Session != "0012a9f0-8a3c-4b3f-b1d5-57c5d0f3a001" {
		t.Fatalf("session %q, want the sid", p.Session)
	}
	// The v1 audience is not a v2 audience.
	if got := checkOf(t, e.v, e.v2user(t, map[string]any{"aud": "api://custos"})); got != identity.CheckAudience {
		t.Fatalf("check %q", got)
	}
}

func TestEntraGroupOverageIsUnknownNotNone(t *testing.T) {
	e := newEntra(t)
	p := mustVerify(t, e.v, e.v2user(t, map[string]any{
		"groups":         nil,
		"_claim_names":   map[string]any{"groups": "src1"},
		"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://graph.microsoft.com/v1.0/users/OBJECT-ID/getMemberObjects"}},
	}))
	if !p.GroupsUnknown || len(p.Groups) != 0 || p.Kind != identity.KindHuman || !reflect.DeepEqual(p.Roles, []string{"Custos.Approver"}) {
		t.Fatalf("principal %+v", p)
	}
	if p = mustVerify(t, e.v, e.v2user(t, map[string]any{"groups": nil, "hasgroups": true})); !p.GroupsUnknown {
		t.Fatalf("hasgroups: %+v", p)
	}
	if p = mustVerify(t, e.v, e.v2user(t, map[string]any{"groups": nil})); p.GroupsUnknown {
		t.Fatalf("no groups and no overage: %+v", p)
	}
}

func TestEntraAgentIdentities(t *testing.T) {
	e := newEntra(t)
	t.Run("autonomous agent", func(t *testing.T) {
		p := mustVerify(t, e.v, e.agent(t, nil))
		if p.Kind != identity.KindWorkload || p.Subject != "77777777-0000-0000-0000-0000000a9e17" ||
			p.App != "66666666-0000-0000-0000-0000000a9e17" || p.Actor != nil {
			t.Fatalf("principal %+v", p)
		}
		for k, v := range map[string]string{"xms_par_app_azp": "88888888-0000-0000-0000-00000b1ue9r1",
			"xms_act_fct": "3 9 11", "xms_sub_fct": "9 3 11", "xms_tnt_fct": "3 9", "xms_idrel": "7 10"} {
			if p.Claims[k] != v {
				t.Fatalf("claim %s = %v, want %q", k, p.Claims[k], v)
			}
		}
	})
	t.Run("agent user: idtyp user does not make a human", func(t *testing.T) {
		p := mustVerify(t, e.v, e.agent(t, map[string]any{"idtyp": "user", "scp": "Pipeline.Run"}))
		if p.Kind != identity.KindWorkload {
			t.Fatalf("principal %+v", p)
		}
	})
	t.Run("interactive agent acting for a user", func(t *testing.T) {
		p := mustVerify(t, e.v, e.v2user(t, map[string]any{"azp": "66666666-0000-0000-0000-0000000a9e17",
			"xms_act_fct": "3 11", "xms_sub_fct": "13", "xms_par_app_azp": "88888888-0000-0000-0000-00000b1ue9r1"}))
		if p.Kind != identity.KindWorkload || p.Subject != "44444444-0000-0000-0000-00000000da2a" ||
			!reflect.DeepEqual(p.Actor, []string{"66666666-0000-0000-0000-0000000a9e17"}) {
			t.Fatalf("principal %+v", p)
		}
	})
}

func TestOnBehalfOfChain(t *testing.T) {
	e := newEntra(t)
	tok := e.managedIdentity(t, map[string]any{"act": map[string]any{"sub": "pipeline-nightly",
		"act": map[string]any{"sub": "dana@bank.example", "act": map[string]any{"client_id": "scheduler"}}}})
	p := mustVerify(t, e.v, tok)
	if !reflect.DeepEqual(p.Actor, []string{"pipeline-nightly", "dana@bank.example", "scheduler"}) || p.Kind != identity.KindWorkload {
		t.Fatalf("principal %+v", p)
	}
	// Nesting is bounded.
	act := map[string]any{"sub": "deepest"}
	for range 40 {
		act = map[string]any{"sub": "x", "act": act}
	}
	if p := mustVerify(t, e.v, e.managedIdentity(t, map[string]any{"act": act})); len(p.Actor) != 16 {
		t.Fatalf("%d actors", len(p.Actor))
	}
}

func TestGenericProviderClaimNames(t *testing.T) {
	c := newClock()
	is := identitytest.New(t, "/realms/custos", identitytest.WithClock(c.Now))
	k := is.AddKey(t, jose.ES256)
	v := newVerifier(t, c, identity.Options{}, config.Issuer{Issuer: is.URL, Audiences: []string{identitytest.DefaultAudience},
		Claims: config.ClaimNames{Groups: "grp", Roles: "realm_access.roles"}})
	p := mustVerify(t, v, is.Token(t, k, map[string]any{"sub": "svc-etl", "azp": "etl-client", "grp": []string{"/ops"},
		"groups": []string{"ignored"}, "realm_access": map[string]any{"roles": []string{"reader", "writer"}},
		"jti": "has/slash+plus", "scope": "openid"}))
	if p.Subject != "svc-etl" || p.App != "etl-client" || !reflect.DeepEqual(p.Groups, []string{"/ops"}) ||
		!reflect.DeepEqual(p.Roles, []string{"reader", "writer"}) || p.Kind != identity.KindWorkload {
		t.Fatalf("principal %+v", p)
	}
	if !strings.HasPrefix(p.Session, "jti-") || len(p.Session) != 36 {
		t.Fatalf("session %q: a jti that is not a valid session name is hashed", p.Session)
	}
}
