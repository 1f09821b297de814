package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/credentials/azuritetest"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// agentToken is an azcore policy that presents the agent's token for
// Custos: the only credential the agent holds.
type agentToken string

func (a agentToken) Do(req *policy.Request) (*http.Response, error) {
	req.Raw().Header.Set("authorization", string(a))
	return req.Next()
}

// The real Azure SDK for Go as the agent, against the real Azure Storage
// emulator behind Custos, through both data planes: the agent holds only a
// token for Custos; Custos signs each request with the account key
// (SharedKey, Blob and Table variants) over exactly the request Azurite
// receives, and Azurite, which checks the signatures, accepts. Neither the
// account key nor the agent's token reaches the upstream, the log or the
// audit events.
func TestAzureStorageThroughCustosWithSharedKeyInjection(t *testing.T) {
	az := azuritetest.Shared(t)
	keyFile := filepath.Join(t.TempDir(), "storage.key")
	if err := os.WriteFile(keyFile, []byte(azuritetest.Key), 0o600); err != nil {
		t.Fatal(err)
	}
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		s := stacktest.Start(t, dp, stacktest.Options{Config: func(string) (*config.Config, error) {
			return config.Parse([]byte(stack.LoopbackListen + `connections:
  - name: blobs
    upstream: ` + az.BlobURL + `
    kind: azure
    credentials:
      azure_shared_key: {account: ` + azuritetest.Account + `, key_file: ` + keyFile + `, service: blob}
  - name: tables
    upstream: ` + az.TableURL + `
    kind: azure
    credentials:
      azure_shared_key: {account: ` + azuritetest.Account + `, key_file: ` + keyFile + `, service: table}
dev:
  issuer: true
`))
		}})
		tok, _, err := s.CP.DevIssuer.Mint(devissuer.Claims{Subject: "etl"})
		if err != nil {
			t.Fatal(err)
		}
		opts := azcore.ClientOptions{PerCallPolicies: []policy.Policy{agentToken("Bearer " + tok)}}
		ctx := context.Background()
		name := strings.ToLower(strings.ReplaceAll(string(dp), "_", "")) + "-evidence"

		blobs, err := azblob.NewClientWithNoCredential(s.URL+"/blobs", &azblob.ClientOptions{ClientOptions: opts})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := blobs.CreateContainer(ctx, name, nil); err != nil {
			t.Fatalf("create container through Custos: %v", err)
		}
		content := []byte(`{"report": "nightly", "rows": 3}`)
		if _, err := blobs.UploadBuffer(ctx, name, "runs/2026-12-01.json", content, nil); err != nil {
			t.Fatalf("upload through Custos: %v", err)
		}
		got, err := blobs.DownloadStream(ctx, name, "runs/2026-12-01.json", nil)
		if err != nil {
			t.Fatalf("download through Custos: %v", err)
		}
		b, _ := io.ReadAll(got.Body)
		got.Body.Close()
		if !bytes.Equal(b, content) {
			t.Fatal("the blob came back different")
		}
		pager := blobs.NewListBlobsFlatPager(name, nil)
		page, err := pager.NextPage(ctx)
		if err != nil || len(page.Segment.BlobItems) != 1 {
			t.Fatalf("list through Custos: %v", err)
		}

		tables, err := aztables.NewServiceClientWithNoCredential(s.URL+"/tables", &aztables.ClientOptions{ClientOptions: opts})
		if err != nil {
			t.Fatal(err)
		}
		tname := "evidence" + strings.ReplaceAll(name, "-", "")
		if _, err := tables.CreateTable(ctx, tname, nil); err != nil {
			t.Fatalf("create table through Custos: %v", err)
		}
		tc := tables.NewClient(tname)
		if _, err := tc.AddEntity(ctx, []byte(`{"PartitionKey": "run", "RowKey": "1", "Rows": 3}`), nil); err != nil {
			t.Fatalf("insert entity through Custos: %v", err)
		}
		if _, err := tc.GetEntity(ctx, "run", "1", nil); err != nil {
			t.Fatalf("read entity through Custos: %v", err)
		}

		// Azurite accepted every request, so each carried Custos' SharedKey
		// signature and not the agent's token. Nothing holds the key.
		var all strings.Builder
		all.WriteString(s.Log.String())
		for _, e := range s.Events.Of(record.Decided, "") {
			all.WriteString(e.Path + e.Detail + strings.Join(e.Reasons, " "))
		}
		if strings.Contains(all.String(), azuritetest.Key) || strings.Contains(all.String(), azuritetest.Key[:20]) || strings.Contains(all.String(), tok) {
			t.Fatal("the account key or the agent's token is in the log or the events")
		}
	})
}
