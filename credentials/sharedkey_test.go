package credentials_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/custos-dev/custos/credentials"
	"github.com/custos-dev/custos/credentials/azuritetest"
)

// TestSharedKeyMatchesTheSDK signs every request the azblob SDK makes with
// its own SharedKey credential and compares: the injector, given the
// request as the server received it and the SDK's x-ms-date, must produce
// the SDK's Authorization byte for byte. Azure Storage accepts the SDK's
// signatures, so this holds the injector to the service without Azurite.
func TestSharedKeyMatchesTheSDK(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []*http.Request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Clone(r.Context()))
		mu.Unlock()
		w.Header().Set("x-ms-request-id", "1")
		switch {
		case r.Method == "PUT":
			w.WriteHeader(201)
		default:
			w.WriteHeader(200)
		}
	}))
	defer srv.Close()
	cred, err := azblob.NewSharedKeyCredential(azuritetest.Account, azuritetest.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := azblob.NewClientWithSharedKeyCredential(srv.URL+"/"+azuritetest.Account, cred,
		&azblob.ClientOptions{ClientOptions: policy.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, _ = c.CreateContainer(ctx, "container", &azblob.CreateContainerOptions{Metadata: map[string]*string{"b": to.Ptr("2"), "A_x": to.Ptr("1"), "a-y": to.Ptr("3")}})
	_, _ = c.UploadBuffer(ctx, "container", "dir/a b+c%d=é.txt", []byte("hello"), &azblob.UploadBufferOptions{
		Metadata:    map[string]*string{"owner": to.Ptr("spaced  value"), "tag_1": to.Ptr("x")},
		HTTPHeaders: &blob.HTTPHeaders{BlobContentType: to.Ptr("text/plain"), BlobContentLanguage: to.Ptr("en")},
	})
	_, _ = c.NewListBlobsFlatPager("container", &azblob.ListBlobsFlatOptions{Prefix: to.Ptr("dir/a b"), MaxResults: to.Ptr(int32(5)),
		Include: azblob.ListBlobsInclude{Metadata: true, Snapshots: true}}).NextPage(ctx)
	_, _ = c.DownloadStream(ctx, "container", "dir/a b+c%d=é.txt", &azblob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: 1, Count: 2}})
	_, _ = c.DeleteBlob(ctx, "container", "x", nil)

	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 5 {
		t.Fatalf("the SDK made %d requests", len(seen))
	}
	for _, r := range seen {
		date, err := time.Parse(http.TimeFormat, r.Header.Get("x-ms-date"))
		if err != nil {
			t.Fatal(err)
		}
		inj := mustNew(t, credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: azuritetest.Account, KeyEnv: "K"}},
			credentials.Options{Now: func() time.Time { return date }, Getenv: func(string) string { return azuritetest.Key }})
		out := serverSide(r)
		m, err := inj.Inject(ctx, out)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := header(m, "authorization")
		if want := r.Header.Get("Authorization"); got != want {
			t.Errorf("%s %s: injector and SDK signatures differ", r.Method, r.RequestURI)
		}
		if _, ok := header(m, "x-ms-version"); ok {
			t.Errorf("%s %s: x-ms-version set although the agent sent one", r.Method, r.URL)
		}
	}
}

// serverSide is the Outgoing for a request as a server received it.
func serverSide(r *http.Request) credentials.Outgoing {
	h := map[string]string{}
	for k, v := range r.Header {
		if k != "Authorization" {
			h[strings.ToLower(k)] = strings.Join(v, ",")
		}
	}
	if r.ContentLength > 0 {
		h["content-length"] = strconv.FormatInt(r.ContentLength, 10)
	}
	path, _, _ := strings.Cut(r.RequestURI, "?") // as on the wire
	return credentials.Outgoing{Method: r.Method, Scheme: "http", Host: r.Host, Path: path, RawQuery: r.URL.RawQuery, Headers: h}
}

// TestSharedKeyMutation: what the Mutation carries for each variant.
func TestSharedKeyMutation(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	key := writeFile(t, "k", azuritetest.Key)
	cases := []struct {
		name, service, host, path, query string
		headers                          map[string]string
		table                            bool
		removeQuery                      []string
	}{
		{"blob host", "", "acct.blob.core.windows.net", "/c/b", "comp=list", nil, false, nil},
		{"table host", "", "acct.table.core.windows.net", "/Tables", "", nil, true, nil},
		{"table by odata", "", "127.0.0.1:10002", "/acct/t1", "", map[string]string{"dataserviceversion": "3.0"}, true, nil},
		{"table by path", "", "127.0.0.1:10002", "/acct/Tables('t1')", "", nil, true, nil},
		{"table by entity path", "", "127.0.0.1:10002", "/acct/t1(PartitionKey='a',RowKey='b')", "", nil, true, nil},
		{"blob path-style", "", "127.0.0.1:10000", "/acct/container/Blob(1).txt", "", nil, false, nil},
		{"explicit table", "table", "example.com", "/t1", "comp=acl", nil, true, nil},
		{"explicit blob", "blob", "acct.table.core.windows.net", "/c", "", nil, false, nil},
		{"agent SAS removed", "", "acct.blob.core.windows.net", "/c/b", "sv=2020&sig=abc&comp=x&SE=1", nil, false, []string{"sv", "sig", "SE"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inj := mustNew(t, credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "acct", KeyFile: key, Service: c.service}},
				credentials.Options{Now: func() time.Time { return now }})
			h := map[string]string{"date": "yesterday"}
			for k, v := range c.headers {
				h[k] = v
			}
			m, err := inj.Inject(t.Context(), credentials.Outgoing{Method: "GET", Scheme: "https", Host: c.host, Path: c.path, RawQuery: c.query, Headers: h})
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := header(m, "x-ms-date"); d != "Fri, 02 Jan 2026 03:04:05 GMT" {
				t.Errorf("x-ms-date %q", d)
			}
			v, _ := header(m, "x-ms-version")
			if want := map[bool]string{true: credentials.DefaultTableXMSVersion, false: credentials.DefaultXMSVersion}[c.table]; v != want {
				t.Errorf("x-ms-version %q, want %q (table %v)", v, want, c.table)
			}
			if a, _ := header(m, "authorization"); !strings.HasPrefix(a, "SharedKey acct:") {
				t.Errorf("authorization %q", a)
			}
			if fmt.Sprint(m.RemoveQuery) != fmt.Sprint(c.removeQuery) {
				t.Errorf("remove query %q, want %q", m.RemoveQuery, c.removeQuery)
			}
			for _, r := range m.Remove {
				if _, ok := header(m, r); ok {
					t.Errorf("%s both set and removed", r)
				}
			}
			if !strings.Contains(fmt.Sprint(m.Remove), "date") || !strings.Contains(fmt.Sprint(m.Remove), "proxy-authorization") {
				t.Errorf("remove %q: want date and proxy-authorization", m.Remove)
			}
			if s := fmt.Sprintf("%v %+v %#v", m, m, m); strings.Contains(s, "SharedKey acct:") {
				t.Errorf("a Mutation prints its signature: %s", s)
			}
		})
	}
}

// TestSpecPrintsNoSecret: neither a Spec nor an Injector nor an error
// prints a secret, however formatted.
func TestSpecPrintsNoSecret(t *testing.T) {
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="
	key := writeFile(t, "k", secret)
	spec := credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "acct", KeyFile: key}}
	inj := mustNew(t, spec, credentials.Options{})
	for _, s := range []string{fmt.Sprint(spec), fmt.Sprintf("%+v", spec), fmt.Sprintf("%#v", spec),
		fmt.Sprint(inj), fmt.Sprintf("%+v", inj), fmt.Sprintf("%#v", inj)} {
		assertNoSecret(t, "formatted", s, secret)
		if !strings.Contains(s, "file "+key) {
			t.Errorf("%q does not say where the key is", s)
		}
	}
	notBase64 := writeFile(t, "bad", "not base64 "+secret)
	_, err := credentials.New(credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "acct", KeyFile: notBase64}}, credentials.Options{})
	if err == nil {
		t.Fatal("a key that is not base64 was accepted")
	}
	assertNoSecret(t, "error", err.Error(), secret)
}

// TestSpecValidate names each problem's key.
func TestSpecValidate(t *testing.T) {
	cases := []struct {
		spec credentials.Spec
		want string
	}{
		{credentials.Spec{}, "exactly one of"},
		{credentials.Spec{SAS: &credentials.SAS{TokenFile: "x"}, Bearer: &credentials.Bearer{TokenFile: "y"}}, "exactly one of"},
		{credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "A!", KeyFile: "k"}}, "azure_shared_key.account"},
		{credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "acct", KeyFile: "k", KeyEnv: "E"}}, "exactly one of key_file, key_env"},
		{credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "acct", KeyFile: "k", Service: "dfs"}}, "azure_shared_key.service"},
		{credentials.Spec{SAS: &credentials.SAS{}}, "sas.token_file"},
		{credentials.Spec{OAuthClientCredentials: &credentials.OAuthClientCredentials{TokenURL: "ftp://x", ClientID: "c", ClientSecretFile: "f", Scope: "s"}}, "token_url"},
		{credentials.Spec{OAuthClientCredentials: &credentials.OAuthClientCredentials{TokenURL: "https://x"}}, "client_id"},
		{credentials.Spec{Bearer: &credentials.Bearer{}}, "bearer.token_file"},
	}
	for _, c := range cases {
		err := c.spec.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.spec, err, c.want)
		}
	}
	if _, err := credentials.New(credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: "acct", KeyEnv: "NOPE"}},
		credentials.Options{Getenv: func(string) string { return "" }}); err == nil || !strings.Contains(err.Error(), "NOPE") {
		t.Errorf("unset key_env: %v", err)
	}
}
