package warehouse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxBodyBytes caps a request body.
const MaxBodyBytes = 1 << 20

// QueryTimeout bounds one request's statements; a statement still running
// then is interrupted (SQLite's sqlite3_interrupt).
const QueryTimeout = 10 * time.Second

// queryRequest is the body of POST /query.
type queryRequest struct {
	Query string `json:"query"`
}

// errorResponse is every error's body.
type errorResponse struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// ServeHTTP serves the warehouse's API:
//
//	POST /query    {"query": "SELECT …"} → 200 {"columns": [...], "rows": [{...}], "changes": N}
//	GET  /healthz  200 "ok" as text/plain
//
// Errors are JSON, {"error": "sql_error", "message": "…"}: bad_request (a
// body that is not {"query": "…"}), sql_error (422, SQLite refused or
// failed the statement), request_too_large, not_found,
// method_not_allowed.
func (w *Warehouse) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/query":
		if r.Method != http.MethodPost {
			rw.Header().Set("Allow", http.MethodPost)
			writeError(rw, http.StatusMethodNotAllowed, "method_not_allowed", "use POST /query with {\"query\": \"…\"}")
			return
		}
		w.query(rw, r)
	case "/healthz":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			rw.Header().Set("Allow", "GET, HEAD")
			writeError(rw, http.StatusMethodNotAllowed, "method_not_allowed", "use GET /healthz")
			return
		}
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(rw, "ok") //nolint:errcheck // the client went away
	default:
		writeError(rw, http.StatusNotFound, "not_found", "no route for "+r.URL.Path+"; use POST /query")
	}
}

func (w *Warehouse) query(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(rw, http.StatusRequestEntityTooLarge, "request_too_large", "request body over "+strconv.Itoa(MaxBodyBytes)+" bytes")
			return
		}
		writeError(rw, http.StatusBadRequest, "bad_request", "could not read the request body")
		return
	}
	var q queryRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&q); err != nil {
		writeError(rw, http.StatusBadRequest, "bad_request", "the body must be JSON {\"query\": \"…\"}: "+err.Error())
		return
	}
	if strings.TrimSpace(q.Query) == "" {
		writeError(rw, http.StatusBadRequest, "bad_request", "query is empty")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), QueryTimeout)
	defer cancel()
	res, err := w.Query(ctx, q.Query)
	if err != nil {
		writeError(rw, http.StatusUnprocessableEntity, "sql_error", err.Error())
		return
	}
	writeJSON(rw, http.StatusOK, res)
}

func writeError(rw http.ResponseWriter, status int, code, msg string) {
	writeJSON(rw, status, errorResponse{Error: code, Message: msg})
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		// Values scanned from SQLite always encode; this is a bug.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":"internal","message":"could not encode the result"}` + "\n")
	}
	h := rw.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	rw.WriteHeader(status)
	rw.Write(buf.Bytes()) //nolint:errcheck // the client went away
}
