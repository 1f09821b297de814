package credentials_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/custos-dev/custos/credentials"
	"github.com/custos-dev/custos/credentials/azuritetest"
)

func TestMain(m *testing.M) { azuritetest.Main(m) }

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// sharedKeyInjector is the account key injector for Azurite's development
// account, its key in a file; its log is scanned for the key.
func sharedKeyInjector(t *testing.T) credentials.Injector {
	t.Helper()
	keyFile := writeFile(t, "storage.key", azuritetest.Key+"\n")
	log := newLog(t, func() []string { return []string{azuritetest.Key} })
	return mustNew(t, credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{
		Account: azuritetest.Account, KeyFile: keyFile,
	}}, credentials.Options{Logger: log})
}

func blobClient(t *testing.T, proxyURL string) *azblob.Client {
	t.Helper()
	c, err := azblob.NewClientWithNoCredential(proxyURL+"/"+azuritetest.Account, &azblob.ClientOptions{ClientOptions: agentOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tableClient(t *testing.T, proxyURL string) *aztables.ServiceClient {
	t.Helper()
	c, err := aztables.NewServiceClientWithNoCredential(proxyURL+"/"+azuritetest.Account, &aztables.ClientOptions{ClientOptions: agentOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exerciseBlobs lists containers and blobs, uploads and reads back blobs
// whose names need escaping, with metadata (x-ms-meta-* headers, signed)
// and a ranged read (Range, signed).
func exerciseBlobs(t *testing.T, c *azblob.Client) {
	t.Helper()
	ctx := t.Context()
	container := randomName("c-")
	if _, err := c.CreateContainer(ctx, container, nil); err != nil {
		t.Fatalf("create container: %v", err)
	}
	data := []byte("card 4111 1111 1111 1111 and more\n")
	names := []string{"plain.txt", "dir/a b+c=d&e.txt", "ünïcødé/ファイル.txt"}
	for _, n := range names {
		_, err := c.UploadBuffer(ctx, container, n, data, &azblob.UploadBufferOptions{
			Metadata: map[string]*string{"Owner": to.Ptr("custos"), "a_b": to.Ptr("x y"), "zeta": to.Ptr("1")},
		})
		if err != nil {
			t.Fatalf("upload %q: %v", n, err)
		}
	}
	found := false
	for pager := c.NewListContainersPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list containers: %v", err)
		}
		for _, ci := range page.ContainerItems {
			found = found || *ci.Name == container
		}
	}
	if !found {
		t.Errorf("container %s not listed", container)
	}
	var listed []string
	for pager := c.NewListBlobsFlatPager(container, &azblob.ListBlobsFlatOptions{Include: azblob.ListBlobsInclude{Metadata: true}}); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list blobs: %v", err)
		}
		for _, b := range page.Segment.BlobItems {
			listed = append(listed, *b.Name)
		}
	}
	if len(listed) != len(names) {
		t.Errorf("listed %q, want %q", listed, names)
	}
	for _, n := range names {
		resp, err := c.DownloadStream(ctx, container, n, nil)
		if err != nil {
			t.Fatalf("download %q: %v", n, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(got, data) {
			t.Errorf("download %q: %q", n, got)
		}
	}
	resp, err := c.DownloadStream(ctx, container, names[1], &azblob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: 5, Count: 4}})
	if err != nil {
		t.Fatalf("ranged download: %v", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "4111" {
		t.Errorf("ranged download: %q", got)
	}
	if _, err := c.DeleteBlob(ctx, container, names[0], nil); err != nil {
		t.Fatalf("delete blob: %v", err)
	}
	if _, err := c.DeleteContainer(ctx, container, nil); err != nil {
		t.Fatalf("delete container: %v", err)
	}
}

// exerciseTables creates a table, inserts and queries entities, lists
// tables and deletes the table.
func exerciseTables(t *testing.T, c *aztables.ServiceClient) {
	t.Helper()
	ctx := t.Context()
	name := randomName("t")
	if _, err := c.CreateTable(ctx, name, nil); err != nil {
		t.Fatalf("create table: %v", err)
	}
	tc := c.NewClient(name)
	for i, card := range []string{"4111111111111111", "5500005555555559"} {
		e, _ := json.Marshal(aztables.EDMEntity{
			Entity:     aztables.Entity{PartitionKey: "customers", RowKey: fmt.Sprint(i)},
			Properties: map[string]any{"Name": fmt.Sprintf("customer %d", i), "Card": card},
		})
		if _, err := tc.AddEntity(ctx, e, nil); err != nil {
			t.Fatalf("insert entity: %v", err)
		}
	}
	n := 0
	for pager := tc.NewListEntitiesPager(&aztables.ListEntitiesOptions{Filter: to.Ptr("PartitionKey eq 'customers' and RowKey ge '0'")}); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("query entities: %v", err)
		}
		n += len(page.Entities)
	}
	if n != 2 {
		t.Errorf("query: %d entities, want 2", n)
	}
	got, err := tc.GetEntity(ctx, "customers", "1", nil)
	if err != nil {
		t.Fatalf("get entity: %v", err)
	}
	if !bytes.Contains(got.Value, []byte("customer 1")) {
		t.Errorf("get entity: %s", got.Value)
	}
	found := false
	for pager := c.NewListTablesPager(nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list tables: %v", err)
		}
		for _, tb := range page.Tables {
			found = found || *tb.Name == name
		}
	}
	if !found {
		t.Errorf("table %s not listed", name)
	}
	if _, err := c.DeleteTable(ctx, name, nil); err != nil {
		t.Fatalf("delete table: %v", err)
	}
}

// TestSharedKeyBlobAzurite: the agent (azblob, holding only a token for
// Custos) reaches Azurite's Blob service through the proxy, which signs
// with the account key; Azurite checks each signature.
func TestSharedKeyBlobAzurite(t *testing.T) {
	az := azuritetest.Shared(t)
	srv, ip := startProxy(t, "http://"+az.BlobAddr, sharedKeyInjector(t), hooks{})
	exerciseBlobs(t, blobClient(t, srv.URL))
	if errs := ip.errors(); len(errs) > 0 {
		t.Errorf("injection errors: %v", errs)
	}
}

// TestSharedKeyTableAzurite: the same with aztables and SharedKey for
// Table (the injector tells the Table service by its OData headers).
func TestSharedKeyTableAzurite(t *testing.T) {
	az := azuritetest.Shared(t)
	srv, _ := startProxy(t, "http://"+az.TableAddr, sharedKeyInjector(t), hooks{})
	exerciseTables(t, tableClient(t, srv.URL))
}

// TestSharedKeyQueueAzurite: the Queue service with plain HTTP (no queue
// SDK in the module): create a queue, put and peek a message.
func TestSharedKeyQueueAzurite(t *testing.T) {
	az := azuritetest.Shared(t)
	srv, _ := startProxy(t, "http://"+az.QueueAddr, sharedKeyInjector(t), hooks{})
	q := srv.URL + "/" + azuritetest.Account + "/" + randomName("q-")
	do := func(method, url, body string, want int) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
		req.Header.Set("Authorization", agentToken)
		if body != "" {
			req.Header.Set("Content-Type", "application/xml")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
		}
		return string(b)
	}
	do("PUT", q, "", 201)
	do("POST", q+"/messages?messagettl=60", "<QueueMessage><MessageText>aGVsbG8=</MessageText></QueueMessage>", 201)
	if got := do("GET", q+"/messages?peekonly=true&numofmessages=1", "", 200); !strings.Contains(got, "aGVsbG8=") {
		t.Errorf("peek: %s", got)
	}
	do("DELETE", q, "", 204)
}

// TestSignatureCoversTheExactRequest proves the order: a request changed
// after signing (path, a signed header, the query) is refused by Azurite,
// while the same change made before signing is accepted.
func TestSignatureCoversTheExactRequest(t *testing.T) {
	az := azuritetest.Shared(t)
	inj := sharedKeyInjector(t)

	// Set up a container and a blob through an honest proxy.
	honest, _ := startProxy(t, "http://"+az.BlobAddr, inj, hooks{})
	c := blobClient(t, honest.URL)
	container := randomName("order-")
	if _, err := c.CreateContainer(t.Context(), container, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a.txt", "b.txt"} {
		if _, err := c.UploadBuffer(t.Context(), container, n, []byte(n), nil); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name   string
		change func(*http.Request)
	}{
		{"path", func(r *http.Request) {
			r.URL.Path = strings.Replace(r.URL.Path, "/a.txt", "/b.txt", 1)
			r.URL.RawPath = ""
		}},
		{"x-ms header", func(r *http.Request) { r.Header.Set("x-ms-client-request-id", "changed") }},
		{"range header", func(r *http.Request) { r.Header.Set("Range", "bytes=0-0") }},
		{"query", func(r *http.Request) { r.URL.RawQuery = "timeout=30" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// After signing: refused.
			after, _ := startProxy(t, "http://"+az.BlobAddr, inj, hooks{after: tc.change})
			_, err := blobClient(t, after.URL).DownloadStream(t.Context(), container, "a.txt", nil)
			var re *azcore.ResponseError
			if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
				t.Fatalf("changed after signing: %v, want 403 from Azurite", err)
			}
			// Before signing: the signature covers the change, accepted.
			srv, _ := startProxy(t, "http://"+az.BlobAddr, inj, hooks{before: tc.change})
			resp, err := blobClient(t, srv.URL).DownloadStream(t.Context(), container, "a.txt", nil)
			if err != nil {
				t.Fatalf("changed before signing: %v", err)
			}
			resp.Body.Close()
		})
	}
}

// TestSASAzurite: a connection with a SAS token file (an account SAS made
// with the SDK's sas package from the development key); the agent's own
// bogus SAS is replaced, its Authorization removed.
func TestSASAzurite(t *testing.T) {
	az := azuritetest.Shared(t)
	qp := azuritetest.AccountSAS(t)
	blobSig := qp.Signature()
	tcred, err := aztables.NewSharedKeyCredential(azuritetest.Account, azuritetest.Key)
	if err != nil {
		t.Fatal(err)
	}
	tqp, err := aztables.AccountSASSignatureValues{
		Protocol:      aztables.SASProtocolHTTPSandHTTP,
		ExpiryTime:    time.Now().UTC().Add(time.Hour),
		Permissions:   to.Ptr(aztables.AccountSASPermissions{Read: true, Write: true, Delete: true, List: true, Add: true, Update: true}).String(),
		Services:      "t",
		ResourceTypes: to.Ptr(aztables.AccountSASResourceTypes{Service: true, Container: true, Object: true}).String(),
	}.Sign(tcred)
	if err != nil {
		t.Fatal(err)
	}
	tableSig := tqp.Signature()
	secrets := func() []string { return []string{azuritetest.Key, blobSig, tableSig} }

	t.Run("blob", func(t *testing.T) {
		log := newLog(t, secrets)
		inj := mustNew(t, credentials.Spec{SAS: &credentials.SAS{TokenFile: writeFile(t, "blob.sas", "?"+qp.Encode()+"\n")}},
			credentials.Options{Logger: log})
		srv, _ := startProxy(t, "http://"+az.BlobAddr, inj, hooks{after: func(r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				t.Errorf("an Authorization header went upstream with SAS injection")
			}
			if n := strings.Count(r.URL.RawQuery, "sig="); n != 1 {
				t.Errorf("%d sig parameters upstream", n)
			}
		}})
		exerciseBlobs(t, blobClient(t, srv.URL))
		// An agent that sends a SAS of its own: replaced, not appended.
		resp, err := http.Get(srv.URL + "/" + azuritetest.Account + "?comp=list&sig=agent-forged&sv=2020-01-01")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("list with the agent's own SAS replaced: %d", resp.StatusCode)
		}
	})
	t.Run("table", func(t *testing.T) {
		log := newLog(t, secrets)
		inj := mustNew(t, credentials.Spec{SAS: &credentials.SAS{TokenFile: writeFile(t, "table.sas", tqp.Encode())}},
			credentials.Options{Logger: log})
		srv, _ := startProxy(t, "http://"+az.TableAddr, inj, hooks{})
		exerciseTables(t, tableClient(t, srv.URL))
	})
	t.Run("wrong SAS refused", func(t *testing.T) {
		bad := strings.Replace(qp.Encode(), "sp=", "sp=r&x=", 1) // not a SAS parameter: refused at load
		if _, err := credentials.New(credentials.Spec{SAS: &credentials.SAS{TokenFile: writeFile(t, "bad.sas", bad)}}, credentials.Options{}); err == nil {
			t.Error("a SAS file with a foreign parameter was accepted")
		} else {
			assertNoSecret(t, "error", err.Error(), blobSig)
		}
		// A SAS whose permissions were edited no longer matches its sig.
		forged := strings.Replace(qp.Encode(), "sp=", "sp=x", 1)
		inj := mustNew(t, credentials.Spec{SAS: &credentials.SAS{TokenFile: writeFile(t, "forged.sas", forged)}}, credentials.Options{Logger: newLog(t, secrets)})
		srv, _ := startProxy(t, "http://"+az.BlobAddr, inj, hooks{})
		resp, err := http.Get(srv.URL + "/" + azuritetest.Account + "?comp=list")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("forged SAS: %d, want 403", resp.StatusCode)
		}
	})
	assertNoSecret(t, "azurite output", az.Output(), secrets()...)
}

// TestKeyFileReloadAzurite: a wrong key in the file is refused by Azurite;
// once the file holds the right key, requests pass without a restart.
func TestKeyFileReloadAzurite(t *testing.T) {
	az := azuritetest.Shared(t)
	wrong := "AAAA" + azuritetest.Key[4:]
	keyFile := writeFile(t, "storage.key", wrong)
	log := newLog(t, func() []string { return []string{azuritetest.Key, wrong} })
	inj := mustNew(t, credentials.Spec{AzureSharedKey: &credentials.AzureSharedKey{Account: azuritetest.Account, KeyFile: keyFile}},
		credentials.Options{Logger: log, ReloadInterval: -1})
	srv, _ := startProxy(t, "http://"+az.BlobAddr, inj, hooks{})
	c := blobClient(t, srv.URL)
	list := func() error {
		_, err := c.NewListContainersPager(nil).NextPage(t.Context())
		return err
	}
	var re *azcore.ResponseError
	if err := list(); !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong key: %v, want 403", err)
	}
	replaceFile(t, keyFile, azuritetest.Key)
	if err := list(); err != nil {
		t.Fatalf("after the key file changed: %v", err)
	}
}
