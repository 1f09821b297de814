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
