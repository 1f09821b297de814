package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// Source is where a bundle comes from: a directory, a bundle server, or
// files built into the binary.
type Source interface {
	// read returns the bundle unless its content stamp is stamp (then nil).
	read(ctx context.Context, stamp string, vc *bundle.VerificationConfig) (*bundle.Bundle, string, error)
	String() string
}

// Dir is a bundle directory on disk, read whole at each check so that a
// bundle swapped in place is seen as one.
func Dir(dir string) Source { return dirSource(dir) }

// FS is a bundle in fsys (the default bundle built into the binary), named
// name in logs and revisions.
func FS(name string, fsys fs.FS) Source { return fsSource{name: name, fsys: fsys} }

// Server is an OPA bundle server: the bundle at url (a .tar.gz, as `opa
// build` writes it), polled with ETag so an unchanged bundle costs one 304.
func Server(url string, client *http.Client) Source {
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	return &serverSource{url: url, client: client}
}

type dirSource string

func (d dirSource) String() string { return string(d) }

func (d dirSource) read(_ context.Context, stamp string, vc *bundle.VerificationConfig) (*bundle.Bundle, string, error) {
	st, err := os.Stat(string(d))
	if err != nil {
		return nil, "", fmt.Errorf("policy bundle %s: %w", d, err)
	}
	if !st.IsDir() {
		return nil, "", fmt.Errorf("policy bundle %s is not a directory", d)
	}
	return readFS(string(d), os.DirFS(string(d)), stamp, vc)
}

type fsSource struct {
	name string
	fsys fs.FS
}

func (f fsSource) String() string { return f.name }

func (f fsSource) read(_ context.Context, stamp string, vc *bundle.VerificationConfig) (*bundle.Bundle, string, error) {
	return readFS(f.name, f.fsys, stamp, vc)
}

// bundleFile reports whether a bundle holds the file at p: everything but
// hidden files and directories, except OPA's .manifest and
// .signatures.json.
func bundleFile(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, ".") && part != ".manifest" && part != ".signatures.json" {
			return false
		}
	}
	return true
}

// readFS reads every bundle file of fsys into memory (so the bundle parsed
// is exactly the bundle hashed), stamps it with a hash of names and
// contents, and parses it unless the stamp is unchanged.
func readFS(name string, fsys fs.FS, stamp string, vc *bundle.VerificationConfig) (*bundle.Bundle, string, error) {
	files := fstest.MapFS{}
	var names []string
	var total int64
	err := fs.WalkDir(fsys, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		if !bundleFile(p) {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() {
			return nil // directories walk on; links and devices are not read
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		if total += int64(len(b)); total > MaxBundleBytes {
			return fmt.Errorf("larger than %d bytes", MaxBundleBytes)
		}
		files[p] = &fstest.MapFile{Data: b, Mode: 0o444}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("policy bundle %s: %w", name, err)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%d:%s%d:", len(n), n, len(files[n].Data))
		h.Write(files[n].Data)
	}
	newStamp := hex.EncodeToString(h.Sum(nil))
	if newStamp == stamp {
		return nil, stamp, nil
	}
	if len(names) == 0 {
		return nil, "", fmt.Errorf("policy bundle %s holds no files", name)
	}
	loader, err := bundle.NewFSLoader(files)
	if err != nil {
		return nil, "", fmt.Errorf("policy bundle %s: %w", name, err)
	}
	b, err := reader(bundle.NewCustomReader(loader), vc).Read()
	if err != nil {
		return nil, newStamp, fmt.Errorf("policy bundle %s: %w", name, err)
	}
	return &b, newStamp, nil
}

func reader(r *bundle.Reader, vc *bundle.VerificationConfig) *bundle.Reader {
	r = r.WithSizeLimitBytes(MaxBundleBytes).WithProcessAnnotations(true)
	if vc != nil {
		r = r.WithBundleVerificationConfig(vc)
	}
	return r
}

type serverSource struct {
	url    string
	client *http.Client
	mu     sync.Mutex
	etag   string
}

func (s *serverSource) String() string { return s.url }

func (s *serverSource) read(ctx context.Context, stamp string, vc *bundle.VerificationConfig) (*bundle.Bundle, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	etag := s.etag
	s.mu.Unlock()
	if etag != "" && stamp != "" {
		req.Header.Set("if-none-match", etag)
	}
	req.Header.Set("accept", "application/gzip, application/vnd.openpolicyagent.bundles")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("policy bundle server: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && stamp != "":
		return nil, stamp, nil
	case resp.StatusCode != http.StatusOK:
		return nil, "", fmt.Errorf("policy bundle server %s answered %d", s.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("policy bundle server %s: %w", s.url, err)
	}
	if len(body) > MaxBundleBytes {
		return nil, "", fmt.Errorf("policy bundle server %s: the bundle is larger than %d bytes", s.url, MaxBundleBytes)
	}
	sum := sha256.Sum256(body)
	newStamp := hex.EncodeToString(sum[:])
	if newStamp == stamp {
		s.setETag(resp.Header.Get("etag"))
		return nil, stamp, nil
	}
	b, err := reader(bundle.NewReader(bytes.NewReader(body)), vc).Read()
	if err != nil {
		return nil, newStamp, fmt.Errorf("policy bundle from %s: %w", s.url, err)
	}
	s.setETag(resp.Header.Get("etag"))
	return &b, newStamp, nil
}

func (s *serverSource) setETag(e string) {
	s.mu.Lock()
	s.etag = e
	s.mu.Unlock()
}
