package credentials

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Storage service versions Custos asks for when the agent names none.
const (
	// DefaultXMSVersion is for Blob, Queue and File requests.
	DefaultXMSVersion = "2025-11-05"
	// DefaultTableXMSVersion is for Table requests (the Table service's
	// latest REST version).
	DefaultTableXMSVersion = "2019-02-02"
)

// sharedKey signs requests with a storage account key: the SharedKey
// scheme for Blob, Queue and File, and SharedKey for Table
// (https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key).
type sharedKey struct {
	account string
	service string // "", blob, queue, file or table
	key     *secret[[]byte]
	now     func() time.Time
	macs    sync.Pool // of *keyedMAC
	spec    AzureSharedKey
}

type keyedMAC struct {
	key []byte // the key this MAC was made with (shared, not copied)
	h   hash.Hash
}

func newSharedKey(spec AzureSharedKey, o Options) (*sharedKey, error) {
	parse := func(b []byte) ([]byte, error) {
		s := strings.TrimSpace(string(b))
		if s == "" {
			return nil, errEmpty
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(k) == 0 {
			return nil, errors.New("the account key is not base64")
		}
		return k, nil
	}
	var (
		key *secret[[]byte]
		err error
	)
	if spec.KeyFile != "" {
		key, err = fileSecret("azure_shared_key.key_file", spec.KeyFile, o, parse)
	} else {
		key, err = envSecret("azure_shared_key.key_env", spec.KeyEnv, o, parse)
	}
	if err != nil {
		return nil, err
	}
	return &sharedKey{account: spec.Account, service: spec.Service, key: key, now: o.Now, spec: spec}, nil
}

// Kind is KindAzureSharedKey.
func (s *sharedKey) Kind() Kind { return KindAzureSharedKey }

// Close does nothing: there is no background work.
func (s *sharedKey) Close() error { return nil }

// String names the account and where the key comes from.
func (s *sharedKey) String() string { return Spec{AzureSharedKey: &s.spec}.String() }

// GoString is String.
func (s *sharedKey) GoString() string { return s.String() }

// Inject signs req: x-ms-date is now, x-ms-version the agent's or the
// default, and Authorization "SharedKey ACCOUNT:SIGNATURE" over the request
// with those headers, without the agent's Date header and SAS parameters
// (which the Mutation removes).
func (s *sharedKey) Inject(_ context.Context, req Outgoing) (Mutation, error) {
	key, err := s.key.get()
	if err != nil {
		return Mutation{}, err
	}
	q, err := parseQuery(req.RawQuery)
	if err != nil {
		return Mutation{}, fmt.Errorf("azure_shared_key: %w", err)
	}
	h := lowerHeaders(req.Headers)
	table := s.isTable(req, h)
	date := s.now().UTC().Format(http.TimeFormat)
	m := Mutation{Set: make([]Header, 0, 3), Remove: append(agentCredentials(true), "date")}
	m.Set = append(m.Set, Header{"x-ms-date", date})
	version := h["x-ms-version"]
	if version == "" {
		version = DefaultXMSVersion
		if table {
			version = DefaultTableXMSVersion
		}
		m.Set = append(m.Set, Header{"x-ms-version", version})
	}
	var skip map[string]bool
	if m.RemoveQuery = agentSAS(q); len(m.RemoveQuery) > 0 {
		skip = make(map[string]bool, len(m.RemoveQuery))
		for _, n := range m.RemoveQuery {
			skip[n] = true
		}
	}
	var sts string
	if table {
		sts = s.tableStringToSign(req, h, q, skip, date)
	} else {
		sts = s.stringToSign(req, h, q, skip, date, version)
	}
	m.Set = append(m.Set, Header{"authorization", "SharedKey " + s.account + ":" + s.sign(key, sts)})
	return m, nil
}

// isTable picks the signature variant: the Spec's service, else the
// upstream host's service label, else (Azurite, custom domains) the
// request's shape: the Table service's OData headers, or a path that only
// the Table service has (Tables, $batch, a name with parentheses or
// upper-case letters, which container and queue names cannot have). Only
// the table ACL calls look like nothing else; `service: table` covers
// them.
func (s *sharedKey) isTable(req Outgoing, h map[string]string) bool {
	if s.service != "" {
		return s.service == "table"
	}
	host := req.Host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		host = hh
	}
	if labels := strings.Split(strings.ToLower(host), "."); len(labels) >= 3 && net.ParseIP(host) == nil {
		switch labels[1] {
		case "table":
			return true
		case "blob", "queue", "file", "dfs":
			return false
		}
	}
	if h["dataserviceversion"] != "" || h["maxdataserviceversion"] != "" ||
		strings.Contains(h["accept"], "odata=") || strings.Contains(h["content-type"], "odata=") {
		return true
	}
	first := strings.TrimPrefix(req.Path, "/")
	if rest, ok := strings.CutPrefix(first, s.account+"/"); ok { // path-style: /ACCOUNT/…
		first = rest
	}
	first, _, _ = strings.Cut(first, "/")
	return first == "$batch" || strings.HasPrefix(first, "Tables") ||
		strings.ContainsAny(first, "()ABCDEFGHIJKLMNOPQRSTUVWXYZ") || strings.Contains(first, "%28")
}

// stringToSign is SharedKey's for Blob, Queue and File (version 2009-09-19
// and later): the verb, eleven standard headers (Date empty: x-ms-date is
// signed instead; Content-Length empty when 0), the canonicalized x-ms-*
// headers and the canonicalized resource with every query parameter.
func (s *sharedKey) stringToSign(req Outgoing, h map[string]string, q []queryParam, skip map[string]bool, date, version string) string {
	var b strings.Builder
	b.Grow(256 + len(req.Path) + len(req.RawQuery))
	b.WriteString(strings.ToUpper(req.Method))
	cl := h["content-length"]
	if cl == "0" {
		cl = ""
	}
	for _, v := range [...]string{
		h["content-encoding"], h["content-language"], cl, h["content-md5"], h["content-type"],
		"", // Date: removed, x-ms-date is signed
		h["if-modified-since"], h["if-match"], h["if-none-match"], h["if-unmodified-since"], h["range"],
	} {
		b.WriteByte('\n')
		b.WriteString(v)
	}
	b.WriteByte('\n')
	canonicalHeaders(&b, h, date, version)
	s.canonicalResource(&b, req.Path)
	canonicalQuery(&b, q, skip)
	return b.String()
}

// tableStringToSign is SharedKey for Table's: verb, Content-MD5,
// Content-Type, the date (x-ms-date; the agent's Date is removed) and the
// canonicalized resource with only the comp parameter.
func (s *sharedKey) tableStringToSign(req Outgoing, h map[string]string, q []queryParam, skip map[string]bool, date string) string {
	var b strings.Builder
	b.Grow(128 + len(req.Path))
	b.WriteString(strings.ToUpper(req.Method))
	b.WriteByte('\n')
	b.WriteString(h["content-md5"])
	b.WriteByte('\n')
	b.WriteString(h["content-type"])
	b.WriteByte('\n')
	b.WriteString(date)
	b.WriteByte('\n')
	s.canonicalResource(&b, req.Path)
	if comp, ok := compParam(q, skip); ok {
		b.WriteString("?comp=")
		b.WriteString(comp)
	}
	return b.String()
}

// canonicalResource writes /ACCOUNT followed by the path exactly as
// encoded on the wire. With Azurite's path-style URLs the path itself
// starts with /ACCOUNT, and is signed so (/devstoreaccount1/devstoreaccount1/c).
func (s *sharedKey) canonicalResource(b *strings.Builder, path string) {
	b.WriteByte('/')
	b.WriteString(s.account)
	if path == "" {
		path = "/"
	}
	b.WriteString(path)
}

func (s *sharedKey) sign(key []byte, sts string) string {
	km, _ := s.macs.Get().(*keyedMAC)
	if km == nil || &km.key[0] != &key[0] {
		km = &keyedMAC{key: key, h: hmac.New(sha256.New, key)}
	}
	km.h.Reset()
	km.h.Write([]byte(sts))
	var sum [sha256.Size]byte
	sig := base64.StdEncoding.EncodeToString(km.h.Sum(sum[:0]))
	s.macs.Put(km)
	return sig
}

// canonicalHeaders writes every x-ms-* header as "name:value\n" in the
// service's order, with x-ms-date and x-ms-version as the Mutation sets
// them.
func canonicalHeaders(b *strings.Builder, h map[string]string, date, version string) {
	names := make([]string, 0, 8)
	for k := range h {
		if strings.HasPrefix(k, "x-ms-") && k != "x-ms-date" && k != "x-ms-version" {
			names = append(names, k)
		}
	}
	names = append(names, "x-ms-date", "x-ms-version")
	sort.Slice(names, func(i, j int) bool { return compareHeaderNames(names[i], names[j]) < 0 })
	for _, k := range names {
		v := h[k]
		switch k {
		case "x-ms-date":
			v = date
		case "x-ms-version":
			v = version
		}
		b.WriteString(k)
		b.WriteByte(':')
		b.WriteString(strings.TrimSpace(v))
		b.WriteByte('\n')
	}
}

// lowerHeaders returns h with lower-case names, h itself when it already
// has them (the common case: data planes hand over lower-case names).
func lowerHeaders(h map[string]string) map[string]string {
	for k := range h {
		if strings.ToLower(k) != k {
			out := make(map[string]string, len(h))
			for k, v := range h {
				k = strings.ToLower(k)
				if prev, ok := out[k]; ok {
					v = prev + "," + v
				}
				out[k] = v
			}
			return out
		}
	}
	return h
}
