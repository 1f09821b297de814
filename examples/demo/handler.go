package demo

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// maxBodyBytes caps the size of a POST body.
const maxBodyBytes = 1 << 20

// List pagination bounds.
const (
	defaultLimit = 20
	maxLimit     = 100
)

// Handler returns the demo API over 50 synthetic customers,
// NewHandler(Customers(50, 1)). Each call has its own state.
func Handler() http.Handler {
	return NewHandler(Customers(50, 1))
}

// NewHandler returns the demo API, mounted at the root, serving a copy of
// customers (ordered by ID; of records sharing an ID, the first is kept):
//
//	GET  /              {"customers": [...], "total": N}; ?limit= (1-100, default 20), ?offset= (>= 0)
//	POST /              create a customer from JSON (name and email required); 201 with the record
//	GET  /{id}          one customer
//	GET  /{id}/accounts {"customer_id": id, "accounts": [...]}, one to three accounts
//	GET  /healthz       200 "ok" as text/plain
//
// Every other response is application/json, indented by two spaces; errors
// look like {"error": "not_found", "message": "no customer 999"}. Created
// customers live in memory, guarded by a mutex; the handler is safe for
// concurrent use.
func NewHandler(customers []Customer) http.Handler {
	s := newStore(customers)
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", route(s.list))
	mux.Handle("POST /{$}", route(s.create))
	mux.Handle("GET /healthz", route(healthz))
	mux.Handle("GET /{id}", route(s.get))
	mux.Handle("GET /{id}/accounts", route(s.accounts))
	return &router{mux: mux}
}

// route marks the handlers registered on the mux, telling them apart from
// the mux's own not-found, method-not-allowed and redirect handlers.
type route func(http.ResponseWriter, *http.Request)

func (f route) ServeHTTP(w http.ResponseWriter, r *http.Request) { f(w, r) }

// router serves registered routes through the mux and turns the mux's own
// plain-text answers (404, 405 with Allow, path-cleaning redirects) into JSON.
type router struct {
	mux *http.ServeMux
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.RequestURI == "*" {
		writeError(w, http.StatusBadRequest, "bad_request", "request target * is not supported")
		return
	}
	h, _ := rt.mux.Handler(r)
	if _, ok := h.(route); ok {
		rt.mux.ServeHTTP(w, r)
		return
	}
	rec := &recorder{header: make(http.Header)}
	h.ServeHTTP(rec, r)
	for _, name := range []string{"Allow", "Location"} {
		if v := rec.header.Get(name); v != "" {
			w.Header().Set(name, v)
		}
	}
	status := rec.status
	if status == 0 {
		status = http.StatusNotFound
	}
	var msg string
	switch {
	case status == http.StatusNotFound:
		msg = "no route for " + r.URL.Path
	case status == http.StatusMethodNotAllowed:
		msg = fmt.Sprintf("method %s not allowed for %s; allowed: %s", r.Method, r.URL.Path, rec.header.Get("Allow"))
	case status >= 300 && status < 400:
		msg = "use the canonical path " + rec.header.Get("Location")
	default:
		msg = http.StatusText(status)
	}
	writeError(w, status, errorCode(status), msg)
}

// recorder captures the status and headers written by one of the mux's
// built-in handlers, discarding the body.
type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return len(p), nil
}

// errorCode turns a status into a snake_case error code ("Not Found" ->
// "not_found").
func errorCode(status int) string {
	text := strings.ToLower(http.StatusText(status))
	if text == "" {
		return "error"
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r
		}
		return '_'
	}, text)
}

// store holds the customers, ordered by ID.
type store struct {
	mu        sync.RWMutex
	customers []Customer
	byID      map[int]int // customer ID -> index in customers
	nextID    int
	seen      map[string]bool // identifiers issued, for unique generated values
}

func newStore(customers []Customer) *store {
	cs := slices.Clone(customers)
	slices.SortStableFunc(cs, func(a, b Customer) int { return cmp.Compare(a.ID, b.ID) })
	cs = slices.CompactFunc(cs, func(a, b Customer) bool { return a.ID == b.ID })
	s := &store{
		customers: cs,
		byID:      make(map[int]int, len(cs)),
		nextID:    1,
		seen:      make(map[string]bool),
	}
	g := &generator{seen: s.seen}
	for i, c := range cs {
		s.byID[c.ID] = i
		s.nextID = max(s.nextID, c.ID+1)
		g.remember(c)
	}
	return s
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok")
}

type listResponse struct {
	Customers []Customer `json:"customers"`
	Total     int        `json:"total"`
}

func (s *store) list(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "malformed query string")
		return
	}
	limit, ok := intParam(q, "limit", defaultLimit, 1, maxLimit)
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit must be an integer from 1 to %d", maxLimit))
		return
	}
	offset, ok := intParam(q, "offset", 0, 0, -1)
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "offset must be a non-negative integer")
		return
	}
	s.mu.RLock()
	total := len(s.customers)
	page := []Customer{}
	if offset < total {
		page = slices.Clone(s.customers[offset:min(total, offset+limit)])
	}
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, listResponse{Customers: page, Total: total})
}

// intParam parses the query parameter name as a decimal integer in
// [lo, hi] (no upper bound when hi < 0), returning def when it is absent.
// A present but empty value is invalid.
func intParam(q url.Values, name string, def, lo, hi int) (int, bool) {
	if !q.Has(name) {
		return def, true
	}
	v := q.Get(name)
	if v == "" || !allDigits(v) {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || (hi >= 0 && n > hi) {
		return 0, false
	}
	return n, true
}

// customerByID resolves the {id} path value, writing the error response
// and returning false when it is malformed or unknown.
func (s *store) customerByID(w http.ResponseWriter, r *http.Request) (Customer, bool) {
	raw := r.PathValue("id")
	id, err := strconv.Atoi(raw)
	if err != nil || !allDigits(raw) {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("customer id must be a non-negative integer, got %q", raw))
		return Customer{}, false
	}
	s.mu.RLock()
	i, ok := s.byID[id]
	var c Customer
	if ok {
		c = s.customers[i]
	}
	s.mu.RUnlock()
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no customer %d", id))
		return Customer{}, false
	}
	return c, true
}

func (s *store) get(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.customerByID(w, r); ok {
		writeJSON(w, http.StatusOK, c)
	}
}

type accountsResponse struct {
	CustomerID int       `json:"customer_id"`
	Accounts   []account `json:"accounts"`
}

func (s *store) accounts(w http.ResponseWriter, r *http.Request) {
	if c, ok := s.customerByID(w, r); ok {
		writeJSON(w, http.StatusOK, accountsResponse{CustomerID: c.ID, Accounts: accountsFor(c)})
	}
}

var (
	e164Pattern    = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	balancePattern = regexp.MustCompile(`^-?(0|[1-9][0-9]{0,14})\.[0-9]{2}$`)
)

func (s *store) create(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large",
				fmt.Sprintf("request body exceeds %d bytes", maxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "bad_request", "could not read request body")
		return
	}
	var c Customer
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON: "+err.Error())
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad_request", "request body must hold a single JSON object")
		return
	}
	if msg := normalizeNew(&c); msg != "" {
		writeError(w, http.StatusBadRequest, "bad_request", msg)
		return
	}

	s.mu.Lock()
	c.ID = s.nextID
	s.nextID++
	g := newGenerator(hashSeed("create", strconv.Itoa(c.ID), c.Name, c.Email), s.seen)
	g.fill(&c)
	s.byID[c.ID] = len(s.customers)
	s.customers = append(s.customers, c)
	s.mu.Unlock()

	writeJSON(w, http.StatusCreated, c)
}

// normalizeNew trims and checks a customer posted by a client, returning a
// message describing the first problem, or "" when it is acceptable. Any
// client-supplied ID is ignored; a new one is assigned.
func normalizeNew(c *Customer) string {
	c.Name = strings.TrimSpace(c.Name)
	c.Email = strings.TrimSpace(c.Email)
	switch {
	case c.Name == "":
		return "name is required"
	case len(c.Name) > 200:
		return "name is longer than 200 bytes"
	case c.Email == "":
		return "email is required"
	}
	if addr, err := mail.ParseAddress(c.Email); err != nil || addr.Address != c.Email || len(c.Email) > 254 {
		return fmt.Sprintf("email %q is not a valid address", c.Email)
	}
	switch {
	case c.Phone != "" && !e164Pattern.MatchString(c.Phone):
		return "phone must be in E.164 form, e.g. +14155550123"
	case c.SSN != "" && !ssnValid(c.SSN):
		return "ssn must be NNN-NN-NNNN with a valid area, group and serial"
	case c.CardNumber != "" && (len(c.CardNumber) < 12 || len(c.CardNumber) > 19 || !LuhnValid(c.CardNumber)):
		return "card_number must be 12 to 19 digits with a valid Luhn check digit"
	case c.IBAN != "" && !IBANValid(c.IBAN):
		return "iban must be a valid IBAN in electronic format (no spaces)"
	case c.AccountNumber != "" && (len(c.AccountNumber) < 10 || len(c.AccountNumber) > 12 || !allDigits(c.AccountNumber)):
		return "account_number must be 10 to 12 digits"
	case c.RoutingNumber != "" && !ABAValid(c.RoutingNumber):
		return "routing_number must be a 9-digit ABA number with a valid check digit"
	case c.Balance != "" && !balancePattern.MatchString(c.Balance):
		return `balance must be a decimal string with two decimals, e.g. "1234.56"`
	case c.Segment != "" && c.Segment != segmentRetail && c.Segment != segmentPrivate && c.Segment != segmentBusiness:
		return "segment must be retail, private or business"
	}
	return ""
}

type errorResponse struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorResponse{Error: code, Message: msg})
}

// writeJSON writes v as JSON indented by two spaces.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		// Not reached with this package's types.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("{\n  \"error\": \"internal\",\n  \"message\": \"could not encode response\"\n}\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
