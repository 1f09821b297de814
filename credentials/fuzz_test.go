package credentials

import (
	"context"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzSharedKey signs arbitrary agent-controlled parts of a request (path,
// query, an x-ms header) with both variants: no panic, an error only for a
// query that is not valid percent-encoding, and a signature that changes
// when the signed query changes.
func FuzzSharedKey(f *testing.F) {
	for _, s := range [][3]string{
		{"/acct/c/b", "comp=list&restype=container", "x-ms-meta-a"},
		{"/Tables('t')", "$filter=PartitionKey%20eq%20'a'&comp=acl", "x-ms-client-request-id"},
		{"", "a=1&a=2&A=3&&=&b", "x-ms-"},
		{"/%zz", "%zz=1", "x-ms-\xff"},
		{"/c", "sig=x&sv=1&SIG=y;comp=z", "x-ms-a-b"},
	} {
		f.Add(s[0], s[1], s[2], "v")
	}
	key := base64.StdEncoding.EncodeToString([]byte("fuzz key"))
	now := time.Unix(1700000000, 0)
	var injs []*sharedKey
	for _, svc := range []string{"blob", "table", ""} {
		sk, err := newSharedKey(AzureSharedKey{Account: "acct", KeyEnv: "K", Service: svc},
			Options{Now: func() time.Time { return now }, Getenv: func(string) string { return key }}.withDefaults())
		if err != nil {
			f.Fatal(err)
		}
		injs = append(injs, sk)
	}
	f.Fuzz(func(t *testing.T, path, query, hname, hvalue string) {
		req := Outgoing{Method: "PUT", Host: "127.0.0.1:10000", Path: path, RawQuery: query,
			Headers: map[string]string{strings.ToLower(hname): hvalue, "content-length": "0"}}
		_, qerr := parseQuery(query)
		for _, inj := range injs {
			m, err := inj.Inject(context.Background(), req)
			if (err != nil) != (qerr != nil) {
				t.Fatalf("Inject error %v, parseQuery error %v", err, qerr)
			}
			if err != nil {
				if strings.Contains(err.Error(), key) {
					t.Fatal("the key in an error")
				}
				continue
			}
			a := m.Set[len(m.Set)-1]
			if a.Name != "authorization" || !strings.HasPrefix(a.Value, "SharedKey acct:") {
				t.Fatalf("last header set %q", a.Name)
			}
			_ = m.RewriteQuery(query)
			if inj.service == "blob" {
				req2 := req
				req2.RawQuery = query + "&fuzzextra=1"
				m2, err := inj.Inject(context.Background(), req2)
				if err != nil {
					t.Fatal(err)
				}
				if m2.Set[len(m2.Set)-1].Value == a.Value {
					t.Fatal("a query parameter added after signing leaves the signature unchanged")
				}
			}
		}
	})
}

// FuzzRewriteQuery: removing parameters keeps every other one byte for
// byte, and what is added decodes back to itself.
func FuzzRewriteQuery(f *testing.F) {
	f.Add("a=1&sig=x&b=%20", "sig", "sv", "2020-01-01")
	f.Add("", "", "sig", "a+b/c=")
	f.Add("&&s%69g=1&x", "sig", "sig", "%")
	f.Fuzz(func(t *testing.T, raw, remove, name, value string) {
		m := Mutation{RemoveQuery: []string{remove}, AddQuery: []Param{{Name: name, Value: value}}}
		out := m.RewriteQuery(raw)
		q, err := url.ParseQuery(strings.TrimPrefix(out[strings.LastIndex("&"+out, "&"):], "&"))
		if err == nil && (len(q[name]) != 1 || q[name][0] != value) {
			t.Fatalf("added %q=%q, got %q", name, value, out)
		}
		for pair := range strings.SplitSeq(raw, "&") {
			if pair == "" {
				continue
			}
			n, _, _ := strings.Cut(pair, "=")
			if dn, err := url.QueryUnescape(n); err == nil && dn == remove {
				if strings.Contains("&"+out+"&", "&"+pair+"&") && !strings.HasSuffix(out, pair) {
					t.Fatalf("removed %q still in %q", pair, out)
				}
				continue
			}
			if !strings.Contains("&"+out+"&", "&"+pair+"&") {
				t.Fatalf("kept pair %q lost from %q", pair, out)
			}
		}
	})
}

// FuzzCompareHeaderNames: the service's header order is a strict weak
// order (antisymmetric, reflexive equality) over any bytes.
func FuzzCompareHeaderNames(f *testing.F) {
	f.Add("x-ms-meta-a_b", "x-ms-meta-ab")
	f.Add("x-ms-date", "x-ms-date")
	f.Add("x-ms-\x80", "x-ms-a")
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := compareHeaderNames(a, b), compareHeaderNames(b, a)
		if ab != -ba {
			t.Fatalf("compare(%q,%q)=%d, compare(%q,%q)=%d", a, b, ab, b, a, ba)
		}
		if compareHeaderNames(a, a) != 0 {
			t.Fatalf("compare(%q,%q) != 0", a, a)
		}
	})
}

// FuzzParseSAS: any token file content either parses into SAS parameters
// with a sig, or is refused; never a panic, never the content in an error.
func FuzzParseSAS(f *testing.F) {
	f.Add([]byte("?sv=2025-11-05&sp=r&sig=abc%2B%3D"))
	f.Add([]byte("sig=&sv=1"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := parseSAS(b)
		if err != nil {
			return
		}
		sig := false
		for _, p := range ps {
			if !isSASParam(p.Name) {
				t.Fatalf("non-SAS parameter %q accepted", p.Name)
			}
			sig = sig || (p.Name == "sig" && p.Value != "")
		}
		if !sig {
			t.Fatal("a SAS without sig accepted")
		}
	})
}
