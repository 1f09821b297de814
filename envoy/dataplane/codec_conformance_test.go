package dataplane_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The HTTP/1 codec: what Envoy's codec (Balsa, with Envoy's checks) refuses
// and serves, through the listener Custos emits (ext_authz, ext_proc
// processing responses, the router, local_reply_config), and through a
// listener without ext_proc where the refusals' own replies show. Each
// request is sent raw over TCP: Go's client cannot send most of them.

// rawExchange is what one raw request got back on its connection.
type rawExchange struct {
	// resp is the reply, nil when the connection closed without one.
	resp *http.Response
	body string
	// continued: a 100 Continue came before the reply.
	continued bool
	// closed: the connection was closed after the reply (or instead of one).
	closed bool
	// err is why the exchange could not be made, or why it hung.
	err error
}

// exchange sends parts on a connection of its own, pausing between them,
// reads the reply (if any) and, when waitClose, whether the connection then
// closes (within 5 seconds: Envoy closes after its delayed-close timeout).
// It is safe to call from any goroutine: failures are in err.
func exchange(url string, waitClose bool, parts ...string) rawExchange {
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		return rawExchange{err: err}
	}
	defer conn.Close()
	for i, p := range parts {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		if _, err := io.WriteString(conn, p); err != nil {
			return rawExchange{err: err}
		}
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	var x rawExchange
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return rawExchange{err: errors.New("no reply and the connection stayed open")}
			}
			x.closed = true
			return x
		}
		if resp.StatusCode == http.StatusContinue {
			x.continued = true
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		x.resp, x.body = resp, string(b)
		break
	}
	if x.resp.Close {
		x.closed = true
	} else if waitClose {
		_, err := br.ReadByte()
		var ne net.Error
		x.closed = err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}
	return x
}

// parallel runs f for each case at once (Envoy closes a refused
// connection only after its one-second delayed close).
func parallel[T any](cases []T, f func(T)) {
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() { defer wg.Done(); f(c) }()
	}
	wg.Wait()
}

// A request line counted in max_request_headers_kb: this one alone is
// over Custos' 60 KiB.
var longRequestLine = "GET /" + strings.Repeat("a", 61<<10) + " HTTP/1.1\r\nHost: t\r\n\r\n"

// codecRefusals are requests Envoy's codec refuses, with the reply it makes
// where ext_proc does not process responses.
var codecRefusals = []struct {
	name, raw     string
	status        int
	body, details string
}{
	{"HTTP/1.0", "GET /x HTTP/1.0\r\nHost: t\r\n\r\n", 426, "Upgrade Required", "low_version"},
	{"HTTP/1.2", "GET /x HTTP/1.2\r\nHost: t\r\n\r\n", 426, "Upgrade Required", "low_version"},
	{"no version", "GET /x\r\nHost: t\r\n\r\n", 426, "Upgrade Required", "low_version"},
	{"malformed version", "GET /x HTTP/11\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"transfer-encoding with content-length", "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		400, "Bad Request", "http1.content_length_and_chunked_not_allowed"},
	{"unknown transfer-encoding", "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Not Implemented", "http1.invalid_transfer_encoding"},
	{"chunked twice", "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 501, "Not Implemented", "http1.invalid_transfer_encoding"},
	{"two content-lengths", "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400, "Bad Request", "http1.codec_error"},
	{"signed content-length", "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: +3\r\n\r\nabc", 400, "Bad Request", "http1.codec_error"},
	{"space in a header name", "GET /x HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"space before the colon", "GET /x HTTP/1.1\r\nHost: t\r\nX-A : x\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"separator in a header name", "GET /x HTTP/1.1\r\nHost: t\r\nX(y): z\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"empty header name", "GET /x HTTP/1.1\r\nHost: t\r\n: z\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"header without colon", "GET /x HTTP/1.1\r\nHost: t\r\nX-A\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"control byte in a value", "GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n", 400, "Bad Request", "http1.invalid_characters"},
	{"non-ASCII request line", "GET /\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"non-ASCII query", "GET /a?b=\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"non-ASCII host", "GET /x HTTP/1.1\r\nHost: cu\xc5\xbftomers.internal\r\n\r\n", 400, "Bad Request", "http.invalid_authority"},
	{"space in the host", "GET /x HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "Bad Request", "http.invalid_authority"},
	{"lower-case method", "get /x HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"unknown method", "BREW /x HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"tab in the request line", "GET /a\tb HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"four parts in the request line", "GET /x HTTP/1.1 x\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"asterisk without OPTIONS", "GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.invalid_url"},
	{"target neither path nor URL", "GET h:80 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.codec_error"},
	{"https URL in plain text", "GET https://h/x HTTP/1.1\r\nHost: t\r\n\r\n", 403, "Forbidden", "http1.https_url_on_plaintext_connection"},
	{"other scheme", "GET ftp://h/x HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.invalid_scheme"},
	{"CONNECT without port", "CONNECT t HTTP/1.1\r\nHost: t\r\n\r\n", 400, "Bad Request", "http1.invalid_url"},
	{"CONNECT with a body", "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\nContent-Length: 3\r\n\r\nabc", 400, "Bad Request", "http1.body_disallowed"},
	{"request line over the header limit", longRequestLine, 431, "Request Header Fields Too Large", "http1.headers_too_large"},
}

// On the listener Custos emits, a request Envoy's codec refuses gets no
// reply at all: ext_proc opens its stream for the reply and waits, the codec
// error resets the stream, and the connection is closed (as
// TestConnectionManagerRequestHeaderLimitIs431 shows for the 431). No filter
// and no upstream sees the request. Go's net/http answered most of these
// itself in plain text (or served them).
// Mirrors: codec_impl.cc, balsa_parser.cc (found by running the suite).
func TestCodecRefusalsCloseCustosConnections(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, custosSetup(t))
		parallel(codecRefusals, func(c struct {
			name, raw     string
			status        int
			body, details string
		}) {
			x := exchange(h.url, true, c.raw)
			if x.err != nil {
				t.Errorf("%s: %v", c.name, x.err)
				return
			}
			if x.resp != nil || !x.closed {
				t.Errorf("%s: got a reply %v (closed %v), want the connection closed without one", c.name, x.resp != nil, x.closed)
			}
		})
		if h.authz.calls() != 0 || h.upstream.count() != 0 {
			t.Errorf("a refused request reached ext_authz (%d) or the upstream (%d)", h.authz.calls(), h.upstream.count())
		}
	})
}

// probeReplies renders every local reply as JSON with its details, body and
// x-request-id (null when absent).
func probeReplies() *hcmv3.LocalReplyConfig {
	body, _ := structpb.NewStruct(map[string]any{"details": "%RESPONSE_CODE_DETAILS%", "request_id": "%REQ(X-REQUEST-ID)%", "body": "%LOCAL_REPLY_BODY%"})
	every := &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{
		StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: &accesslogv3.ComparisonFilter{
			Op: accesslogv3.ComparisonFilter_GE, Value: &corev3.RuntimeUInt32{DefaultValue: 0, RuntimeKey: "k"},
		}},
	}}
	return &hcmv3.LocalReplyConfig{Mappers: []*hcmv3.ResponseMapper{{Filter: every,
		BodyFormatOverride: &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: body}}}}}
}

type probe struct {
	Details   string  `json:"details"`
	RequestID *string `json:"request_id"`
	Body      string  `json:"body"`
}

// Without ext_proc the codec's refusals are answered, through
// local_reply_config: the status, body and details Envoy gives each,
// connection: close, and no request id — the head was refused before its
// headers were kept, so the agent's own x-request-id is never echoed (a 431
// included).
// Mirrors: codec_impl.cc sendProtocolError (found by running the suite).
func TestCodecRefusalRepliesWithoutExtProc(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		s := custosSetup(t)
		s.proc = nil
		custos := s.hcm
		s.hcm = func(m *hcmv3.HttpConnectionManager) { custos(m); m.LocalReplyConfig = probeReplies() }
		h := p.start(t, s)
		parallel(codecRefusals, func(c struct {
			name, raw     string
			status        int
			body, details string
		}) {
			raw := strings.Replace(c.raw, "\r\n", "\r\nX-Request-Id: chosen-by-agent\r\n", 1)
			x := exchange(h.url, true, raw)
			if x.err != nil || x.resp == nil {
				t.Errorf("%s: no reply (%v)", c.name, x.err)
				return
			}
			var got probe
			if err := json.Unmarshal([]byte(x.body), &got); err != nil {
				t.Errorf("%s: reply %q: %v", c.name, x.body, err)
				return
			}
			if x.resp.StatusCode != c.status || got.Body != c.body || got.Details != c.details {
				t.Errorf("%s: %d %q %q, want %d %q %q", c.name, x.resp.StatusCode, got.Body, got.Details, c.status, c.body, c.details)
			}
			if got.RequestID != nil {
				t.Errorf("%s: request id %q, want none", c.name, *got.RequestID)
			}
			if !x.closed {
				t.Errorf("%s: the connection stayed open", c.name)
			}
		})
		if h.authz.calls() != 0 || h.upstream.count() != 0 {
			t.Errorf("a refused request reached ext_authz (%d) or the upstream (%d)", h.authz.calls(), h.upstream.count())
		}
	})
}

// What Envoy's codec serves that Go's net/http refused or read otherwise:
// two Host headers (joined with ",", an empty one ignored), a folded header
// line (the line break goes, the whitespace stays), a lone CR in a value
// (dropped), blank lines before the request line, LF line endings, an
// absolute-form target (its host is :authority), h2c upgrades (stripped),
// Expect other than 100-continue (forwarded, so the Go upstream's own 417
// comes back), chunk extensions, stray bytes after a chunk's data and
// trailers (dropped). ext_authz shows what the filters saw.
// Mirrors: balsa_frame.cc, codec_impl.cc (found by running the suite).
func TestCodecServesWhatEnvoyServes(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, custosSetup(t))
		for _, tc := range []struct {
			name, raw string
			status    int
			host      string            // :authority ext_authz saw, when set
			headers   map[string]string // headers ext_authz saw ("" for absent)
			body      string            // the body the upstream got, when set
		}{
			{"two Host headers", "GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 200, "a,b", nil, ""},
			{"an empty second Host", "GET /x HTTP/1.1\r\nHost: a\r\nHost: \r\n\r\n", 200, "a", nil, ""},
			{"an IPv6 literal's port", "GET /x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 200, "[::1]", nil, ""},
			{"obs-fold", "GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\nX-B: a\r\n\tb\r\n\r\n", 200, "", map[string]string{"x-a": "a b", "x-b": "a\tb"}, ""},
			{"a lone CR in a value", "GET /x HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n", 200, "", map[string]string{"x-a": "ab"}, ""},
			{"blank lines and LF endings", "\r\n\r\nGET /x HTTP/1.1\nHost: t\nX-A: 1\n\n", 200, "t", map[string]string{"x-a": "1"}, ""},
			{"absolute-form", "GET http://h:81/x?q=1 HTTP/1.1\r\nHost: t\r\n\r\n", 200, "h", nil, ""},
			{"h2c upgrade", "GET /x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
				200, "", map[string]string{"upgrade": "", "http2-settings": ""}, ""},
			{"Expect 200-ok", "GET /x HTTP/1.1\r\nHost: t\r\nExpect: 200-ok\r\n\r\n", 417, "", map[string]string{"expect": "200-ok"}, ""},
			{"chunk extension and stray data", "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabcX\r\n2 \r\nde\r\n0\r\nX-T: 1\r\n\r\n",
				200, "", nil, "abcde"},
		} {
			x := exchange(h.url, false, tc.raw)
			if x.err != nil || x.resp == nil {
				t.Errorf("%s: no reply (%v)", tc.name, x.err)
				continue
			}
			if x.resp.StatusCode != tc.status {
				t.Errorf("%s: status %d, want %d (%q)", tc.name, x.resp.StatusCode, tc.status, x.body)
				continue
			}
			check := h.authz.last(t).GetAttributes().GetRequest().GetHttp()
			if tc.host != "" && check.GetHost() != tc.host {
				t.Errorf("%s: ext_authz saw host %q, want %q", tc.name, check.GetHost(), tc.host)
			}
			for k, v := range tc.headers {
				if got := check.GetHeaders()[k]; got != v {
					t.Errorf("%s: ext_authz saw %s %q, want %q", tc.name, k, got, v)
				}
			}
			if tc.body != "" {
				if up := h.upstream.last(t); up.body != tc.body || len(up.trailer) != 0 {
					t.Errorf("%s: the upstream got %q, trailers %v", tc.name, up.body, up.trailer)
				}
			}
		}
	})
}

// Requests Envoy answers itself before any filter decodes them, through
// Custos' listener: CONNECT (no route matches it without a connect_matcher)
// passes ext_proc without :path and never ending, then the router's 404,
// and the connection closes (a request pipelined after it is never read);
// an upgrade no route allows is 403 with no body, seen by ext_proc only as
// a reply, and the connection closes; OPTIONS * is 404 and a missing Host
// 400 (which closes). The last two come before the request's headers are
// sanitised, so their JSON carries the agent's own x-request-id, as a
// refused path does (or none: null, and no x-custos-request-id header).
// Mirrors: conn_manager_impl.cc ActiveStream::decodeHeaders (found by running the suite).
func TestConnectionManagerEarlyReplies(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, custosSetup(t))
		jsonOf := func(t *testing.T, x rawExchange) map[string]any {
			t.Helper()
			var m map[string]any
			if err := json.Unmarshal([]byte(x.body), &m); err != nil {
				t.Fatalf("reply %q: %v", x.body, err)
			}
			return m
		}

		x := exchange(h.url, true, "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\nGET /x HTTP/1.1\r\nHost: t\r\n\r\n")
		if x.err != nil || x.resp == nil || x.resp.StatusCode != 404 || !x.closed {
			t.Fatalf("CONNECT: %v %+v, want 404 and the connection closed", x.err, x.resp)
		}
		if m := jsonOf(t, x); m["error"] != "not_found" || m["request_id"] != x.resp.Header.Get("x-custos-request-id") || m["request_id"] == nil {
			t.Errorf("CONNECT: reply %v", m)
		}
		msgs := h.proc.messages(0)
		if len(msgs) < 2 || msgs[0].GetRequestHeaders() == nil {
			t.Fatalf("CONNECT: processor got %v", h.proc.kinds(0))
		}
		rh := msgs[0].GetRequestHeaders()
		if v, _ := header(rh.GetHeaders(), ":method"); v != "CONNECT" || rh.GetEndOfStream() {
			t.Errorf("CONNECT: :method %q, end_of_stream %v", v, rh.GetEndOfStream())
		}
		if _, ok := header(rh.GetHeaders(), ":path"); ok {
			t.Error("CONNECT: the processor got a :path")
		}
		if v, _ := header(rh.GetHeaders(), ":authority"); v != "t" {
			t.Errorf("CONNECT: :authority %q, want t (port stripped)", v)
		}
		if h.authz.calls() != 0 || h.upstream.count() != 0 {
			t.Errorf("CONNECT: ext_authz %d, upstream %d", h.authz.calls(), h.upstream.count())
		}

		x = exchange(h.url, true, "GET /x HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
		if x.err != nil || x.resp == nil || x.resp.StatusCode != 403 || x.body != "" || !x.closed {
			t.Fatalf("upgrade: %v %+v %q, want 403 with no body and the connection closed", x.err, x.resp, x.body)
		}
		if got := strings.Join(h.proc.kinds(1), ","); got != "response_headers" {
			t.Errorf("upgrade: processor got %s, want only the reply's headers", got)
		}

		x = exchange(h.url, false, "OPTIONS * HTTP/1.1\r\nHost: t\r\nX-Request-Id: chosen-by-agent\r\n\r\n")
		if x.err != nil || x.resp == nil || x.resp.StatusCode != 404 || x.closed {
			t.Fatalf("OPTIONS *: %v %+v, want 404 on a connection kept open", x.err, x.resp)
		}
		if m := jsonOf(t, x); m["error"] != "not_found" || m["request_id"] != "chosen-by-agent" {
			t.Errorf("OPTIONS *: reply %v", m)
		}
		// Without one, no request id at all: null, and no header (Envoy adds
		// none with an empty value).
		x = exchange(h.url, false, "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n")
		if x.err != nil || x.resp == nil || x.resp.StatusCode != 404 {
			t.Fatalf("OPTIONS *: %v %+v, want 404", x.err, x.resp)
		}
		if _, ok := x.resp.Header["X-Custos-Request-Id"]; ok || jsonOf(t, x)["request_id"] != nil {
			t.Errorf("OPTIONS * without x-request-id: header %q, reply %q", x.resp.Header.Get("X-Custos-Request-Id"), x.body)
		}

		for _, raw := range []string{"GET /x HTTP/1.1\r\nX-Request-Id: chosen-by-agent\r\n\r\n", "GET /a#b HTTP/1.1\r\nHost: t\r\nX-Request-Id: chosen-by-agent\r\n\r\n"} {
			x = exchange(h.url, true, raw)
			if x.err != nil || x.resp == nil || x.resp.StatusCode != 400 || !x.closed {
				t.Fatalf("%q: %v %+v, want 400 and the connection closed", raw, x.err, x.resp)
			}
			if m := jsonOf(t, x); m["error"] != "bad_request" || m["request_id"] != "chosen-by-agent" {
				t.Errorf("%q: reply %v", raw, m)
			}
		}
		if h.authz.calls() != 0 || h.upstream.count() != 0 {
			t.Errorf("ext_authz %d, upstream %d", h.authz.calls(), h.upstream.count())
		}
	})
}

// Expect: 100-continue is answered by the connection manager itself, before
// any filter (proxy_100_continue false), and removed: the client gets its
// 100 Continue while ext_proc still holds the request headers, and neither
// the processor nor the upstream sees the header.
// Mirrors: conn_manager_impl.cc decodeHeaders (encode100ContinueHeaders).
func TestConnectionManagerAnswers100Continue(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		h := p.start(t, setup{proc: holdConfig()})
		release := make(chan struct{})
		h.proc.handle = func(c *procConn) error {
			return replyEach(c, func(m *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
				if m.GetRequestHeaders() != nil {
					_ = c.Send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(5 * time.Second)})
					select {
					case <-release:
					case <-c.Context().Done():
						return nil
					}
				}
				return continueWith(m, nil)
			})
		}
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "POST /x HTTP/1.1\r\nHost: t\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n")
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		close(release) // the processor held the headers until now
		if err != nil || resp.StatusCode != http.StatusContinue {
			t.Fatalf("first reply %v %v, want 100 Continue while the processor holds the request", resp, err)
		}
		io.WriteString(conn, "abc")
		resp, err = http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("reply %v %v", resp, err)
		}
		resp.Body.Close()
		if v, ok := header(h.proc.messages(0)[0].GetRequestHeaders().GetHeaders(), "expect"); ok {
			t.Errorf("the processor saw expect %q", v)
		}
		if up := h.upstream.last(t); up.header.Get("Expect") != "" || up.body != "abc" {
			t.Errorf("the upstream got expect %q, body %q", up.header.Get("Expect"), up.body)
		}
	})
}

// A malformed chunk after the request's headers went upstream is a codec
// error like any other, not an upstream failure ("nothing was forwarded"
// would be false): through Custos' listener the processor gets the reply's
// headers, the stream is reset and the client's connection closed without
// a reply; without ext_proc it is 400 Bad Request, http1.codec_error, with
// the request's (generated) id. A malformed chunk that came with the head
// is refused before the request reaches the upstream.
// Mirrors: balsa_frame.cc READING_CHUNK_LENGTH (found by running the suite).
func TestCodecMalformedChunkAfterTheHeaders(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		head := "POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
		h := p.start(t, custosSetup(t))
		x := exchange(h.url, true, head, "zz\r\n0\r\n\r\n")
		if x.err != nil || x.resp != nil || !x.closed {
			t.Fatalf("%v %+v: want the connection closed without a reply", x.err, x.resp)
		}
		eventually(t, "the upstream request to end", func() bool { return h.upstream.count() == 1 })
		// The processor may record the reply's headers after the client
		// saw its connection closed.
		eventually(t, "a second message on the processor's stream", func() bool { return len(h.proc.kinds(0)) >= 2 })
		if got := strings.Join(h.proc.kinds(0), ","); got != "request_headers,response_headers" {
			t.Errorf("processor got %s", got)
		} else if v, _ := header(h.proc.messages(0)[1].GetResponseHeaders().GetHeaders(), ":status"); v != "400" {
			t.Errorf("processor got :status %s, want the codec error's 400", v)
		}

		s := custosSetup(t)
		s.proc = nil
		custos := s.hcm
		s.hcm = func(m *hcmv3.HttpConnectionManager) { custos(m); m.LocalReplyConfig = probeReplies() }
		h = p.start(t, s)
		x = exchange(h.url, true, head, "zz\r\n0\r\n\r\n")
		if x.err != nil || x.resp == nil || x.resp.StatusCode != 400 || !x.closed {
			t.Fatalf("%v %+v: want 400 and the connection closed", x.err, x.resp)
		}
		var got probe
		if err := json.Unmarshal([]byte(x.body), &got); err != nil || got.Details != "http1.codec_error" || got.Body != "Bad Request" || got.RequestID == nil {
			t.Errorf("reply %q (%v), want Bad Request, http1.codec_error, the request's id", x.body, err)
		}

		eventually(t, "the upstream request to end", func() bool { return h.upstream.count() == 1 })
		x = exchange(h.url, true, head+"zz\r\n0\r\n\r\n")
		if x.err != nil || x.resp == nil || x.resp.StatusCode != 400 {
			t.Fatalf("%v %+v: want 400", x.err, x.resp)
		}
		time.Sleep(100 * time.Millisecond)
		if h.upstream.count() != 1 {
			t.Error("a request whose malformed chunk came with its head reached the upstream")
		}
	})
}

// HttpConnectionManager.request_headers_timeout runs from a head's first
// byte: a head still incomplete when it fires is answered 408 "request
// header timeout" (details request_header_timeout) through the filters'
// encoder side, ext_proc included, and the connection closes. A connection
// that has sent nothing is the idle timeout's, not this one's.
// Mirrors: conn_manager_impl.cc onRequestHeaderTimeout (found by running the suite).
func TestConnectionManagerRequestHeadersTimeoutIs408(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		s := custosSetup(t)
		custos := s.hcm
		s.hcm = func(m *hcmv3.HttpConnectionManager) {
			custos(m)
			m.RequestHeadersTimeout = durationpb.New(300 * time.Millisecond)
		}
		h := p.start(t, s)
		silent, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		x := exchange(h.url, true, "GET /x HTTP/1.1\r\nHost: t\r\n")
		if x.err != nil || x.resp == nil || x.resp.StatusCode != 408 || x.body != "request header timeout" || !x.closed {
			t.Fatalf("%v %+v %q: want 408 request header timeout, connection closed", x.err, x.resp, x.body)
		}
		if got := strings.Join(h.proc.kinds(0), ","); got != "response_headers" {
			t.Errorf("processor got %s, want the 408's headers", got)
		}
		_ = silent.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := silent.Read(make([]byte, 1)); err == nil || !isTimeout(err) {
			t.Errorf("a connection that sent nothing was closed by request_headers_timeout: %v", err)
		}
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// common_http_protocol_options.idle_timeout: a connection that never sent
// a request is closed when it fires; one that served requests drains (the
// next response carries connection: close) and is closed drain_timeout
// later if still idle. (Time bounds are wide: they tell the idle timeout's
// close from an immediate one or none.)
// Mirrors: conn_manager_impl.cc onIdleTimeout, startDrainSequence (found by running the suite).
func TestConnectionManagerIdleTimeoutClosesConnections(t *testing.T) {
	bothPlanes(t, func(t *testing.T, p plane) {
		s := custosSetup(t)
		custos := s.hcm
		s.hcm = func(m *hcmv3.HttpConnectionManager) {
			custos(m)
			if m.CommonHttpProtocolOptions == nil {
				m.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{}
			}
			m.CommonHttpProtocolOptions.IdleTimeout = durationpb.New(200 * time.Millisecond)
			// Wide enough for a next request sent 700 ms after a response to
			// find the connection draining, not closed, however late either
			// side runs by a few hundred milliseconds.
			m.DrainTimeout = durationpb.New(time.Second)
		}
		h := p.start(t, s)
		// closedAfter sends each request in turn (after its pause), and
		// returns the responses and how long after the last one was sent
		// (the dial, without requests) the connection closed: the timers
		// cannot start before then, however late this goroutine runs.
		type step struct {
			pause time.Duration
			raw   string
		}
		closedAfter := func(steps ...step) ([]*http.Response, time.Duration, error) {
			start := time.Now()
			c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
			if err != nil {
				return nil, 0, err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			var resps []*http.Response
			for _, st := range steps {
				time.Sleep(st.pause)
				start = time.Now()
				io.WriteString(c, st.raw)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return resps, 0, err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				resps = append(resps, resp)
			}
			if _, err := br.ReadByte(); err == nil || isTimeout(err) {
				return resps, 0, errors.New("not closed")
			}
			return resps, time.Since(start), nil
		}
		get := "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"
		var wg sync.WaitGroup
		wg.Add(3)
		go func() {
			defer wg.Done()
			if _, d, err := closedAfter(); err != nil || d < 150*time.Millisecond || d > 3*time.Second {
				t.Errorf("a connection without a request: closed after %s (%v), want about the idle timeout", d, err)
			}
		}()
		go func() {
			defer wg.Done()
			resps, d, err := closedAfter(step{0, get})
			if err != nil || len(resps) != 1 || resps[0].Close || d < 1100*time.Millisecond || d > 5*time.Second {
				t.Errorf("an idle connection: closed %s after its request (%v), want after the idle and drain timeouts", d, err)
			}
		}()
		go func() {
			defer wg.Done()
			resps, _, err := closedAfter(step{0, get}, step{700 * time.Millisecond, get}) // idle, not yet closed
			if err != nil || len(resps) != 2 || resps[0].Close || !resps[1].Close {
				t.Errorf("a connection draining: %v, want its next response to close it", err)
			}
		}()
		wg.Wait()
	})
}
