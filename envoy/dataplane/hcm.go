package dataplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// connManager is the HTTP connection manager: it sanitises and normalises
// each request, picks its route, runs ext_authz, ext_proc and the router in
// that order, and renders its own replies through local_reply_config.
type connManager struct {
	dp *DataPlane
}

// stream is one request as it passes through the filters.
type stream struct {
	dp     *DataPlane
	cfg    *active
	hcm    *hcmConfig
	w      http.ResponseWriter
	r      *http.Request
	id     uint64
	route  *route
	remote string // client address
	local  string // listener address

	// path is :path as the filters and the router see it (normalised, with query).
	path string
	// authority is :authority (port stripped when configured).
	authority string
	// ctx ends when the client goes or the stream idle timeout fires.
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   *time.Timer
	// metadata is the stream's dynamic metadata, by namespace.
	mdMu     sync.Mutex
	metadata map[string]*structpb.Struct
	// authzResponseHeaders are ext_authz's response_headers_to_add.
	authzResponseHeaders []*corev3.HeaderValueOption
	// authzRan is true once ext_authz let the request through, so its
	// encoder side adds its headers.
	authzRan bool
	// proc is the open ext_proc stream, nil when ext_proc does not (or no
	// longer) take part; procOver is set once it has ended, after which
	// ext_proc does not process anything more of this request.
	proc     *procStream
	procOver bool
	// responseStarted is set once a response (the upstream's or a local
	// reply) has entered the encoder side: a local reply after that goes
	// straight to the client, past the filters (Envoy's
	// sendDirectLocalReply).
	responseStarted bool
	// flags are the response flags set so far (RESPONSE_FLAGS).
	flags string
	// idleReplying is set once the idle timeout's reply is on its way; the
	// ext_proc messages it causes are bounded by their own timer only.
	idleReplying atomic.Bool
	// body is the request body as the router will send it.
	body    io.Reader
	idleFor time.Duration
	// bodyLen is the length of the body the router sends, -1 when unknown.
	bodyLen int64
	// requestStreaming is closed when a STREAMED request body has been
	// processed; streamFailure is why it stopped, if it failed.
	requestStreaming chan struct{}
	requestPipe      *io.PipeReader
	failMu           sync.Mutex
	streamFailure    *procFailure
	wroteHeader      atomic.Bool
	// closeConnection asks for connection: close on the reply.
	closeConnection bool
	// requestReceived is set once the whole request has been read.
	requestReceived atomic.Bool
	// trailerKeys are the trailers the request declared; Envoy's HTTP/1
	// codec drops trailers (enable_trailers false) and passes on the
	// declaration, the trailer header.
	trailerKeys []string
}

func (m *connManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := m.dp.active.Load()
	if cfg == nil {
		http.Error(w, "no configuration", http.StatusServiceUnavailable)
		return
	}
	st := &stream{
		dp: m.dp, cfg: cfg, hcm: cfg.listener.hcm, w: w, r: r,
		// Envoy's stream ids are random 64-bit numbers.
		id:       mathrand.Uint64(),
		metadata: map[string]*structpb.Struct{},
		body:     r.Body,
		bodyLen:  r.ContentLength,
	}
	if r.ContentLength == 0 {
		st.body = http.NoBody
		st.requestReceived.Store(true)
	} else {
		st.body = &eofNotifier{r: r.Body, done: &st.requestReceived}
	}
	if len(r.Trailer) > 0 {
		st.trailerKeys = slices.Sorted(maps.Keys(r.Trailer))
		r.Header.Set("trailer", strings.Join(st.trailerKeys, ","))
		r.Trailer = nil // net/http fills in a new map at the body's end: never read
	}
	st.ctx, st.cancel = context.WithCancelCause(r.Context())
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		st.local = la.String()
	}
	st.remote = r.RemoteAddr
	defer st.close()
	st.decode()
}

// decode runs the request through the connection manager and the filters.
func (st *stream) decode() {
	// The listener's header limit comes before any filter
	// (HttpConnectionManager max_request_headers_kb).
	if headerBytes(st.r) > st.hcm.maxRequestHeaderSize {
		st.headerLimitReply("http1.headers_too_large")
		return
	}
	if headerCount(st.r) > maxHeadersCount {
		st.headerLimitReply("http1.too_many_headers")
		return
	}
	// headers_with_underscores_action REJECT_REQUEST: the codec refuses the
	// request as it reads the header (http1.unexpected_underscore).
	if st.hcm.rejectUnderscores {
		for k := range st.r.Header {
			if strings.IndexByte(k, '_') >= 0 {
				st.codecErrorReply(http.StatusBadRequest, "Bad Request", "http1.unexpected_underscore")
				return
			}
		}
	}
	// Header sanitising (x-request-id included) precedes path checks, so
	// even a refused path gets a request id in its reply.
	st.sanitize()
	if !st.preparePath() {
		return
	}
	if st.hcm.stripTrailingHostDot {
		// "host." and "host.:port" lose the dot (header_utility.cc
		// stripTrailingHostDot), before the port is stripped.
		st.r.Host = stripTrailingHostDot(st.r.Host)
	}
	if st.hcm.stripAnyHostPort {
		// The connection manager rewrites :authority itself: the filters
		// and the upstream see it without the port.
		if h, _, err := net.SplitHostPort(st.r.Host); err == nil {
			st.r.Host = h
		}
	}
	// Virtual hosts match case-insensitively in ASCII only
	// (absl::AsciiStrToLower): "ſ" is not "s" to Envoy.
	st.authority = asciiLower(st.r.Host)
	st.route = st.cfg.routes.match(st.authority, st.path)
	st.startIdleTimer()

	// ext_authz skips the check when no route matched
	// (ext_authz.cc getPerRouteFlags); the router then answers 404.
	if a := st.hcm.extAuthz; a != nil && st.route != nil && !st.route.authzDisabled {
		if !st.extAuthz(a) {
			return
		}
	}
	if p := st.hcm.extProc; p != nil && (st.route == nil || !st.route.procDisabled) {
		if !st.extProcRequest(p) {
			return
		}
	}
	st.router()
}

// headerLimitReply answers a request over the header limits with 431.
func (st *stream) headerLimitReply(details string) {
	st.codecErrorReply(http.StatusRequestHeaderFieldsTooLarge, "Request Header Fields Too Large", details)
}

// codecErrorReply answers a request the HTTP/1 codec refuses. In Envoy that
// reply comes from a codec error: ext_proc, when it processes responses,
// opens its stream for the reply and waits, and the codec resets the stream
// meanwhile, so the client gets no reply at all and its connection is
// closed.
func (st *stream) codecErrorReply(code int, body, details string) {
	if p := st.hcm.extProc; p != nil && (p.mode.responseHeaders || p.mode.responseBody != procfilterv3.ProcessingMode_NONE) {
		st.procOver = true
		panic(http.ErrAbortHandler)
	}
	st.localReply(code, body, details, "", nil)
}

// preparePath applies escaped-slash rejection, normalize_path and
// merge_slashes to :path, before routing and before any filter sees it.
func (st *stream) preparePath() bool {
	raw := st.r.RequestURI
	if raw == "*" || strings.HasPrefix(raw, "http://") || strings.HasPrefix(raw, "https://") {
		raw = st.r.URL.RequestURI()
	}
	if !strings.HasPrefix(raw, "/") {
		st.localReply(http.StatusNotFound, "", "absolute_path_rejected", "", nil)
		return false
	}
	p, q := raw, ""
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		p, q = raw[:i], raw[i:]
	}
	reject := func() bool {
		// A refused path closes the connection (HTTP/1).
		st.closeConnection = true
		st.localReply(http.StatusBadRequest, "", "path_normalization_failed", "", nil)
		return false
	}
	if strings.ContainsRune(raw, '#') { // anywhere in :path, query included
		return reject()
	}
	if st.hcm.rejectEscapedSlashes && hasEscapedSlash(p) {
		return reject()
	}
	if st.hcm.normalizePath {
		n, err := normalizePath(p)
		if err != nil {
			return reject()
		}
		p = n
	}
	if st.hcm.mergeSlashes {
		p = mergeSlashes(p)
	}
	st.path = p + q
	return true
}

// internalHeaders are the x-envoy-* headers Envoy removes from every
// request that is not internal (conn_manager_utility.cc
// cleanInternalHeaders); edgeHeaders are removed too from edge requests.
var (
	internalHeaders = []string{
		"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names", "x-envoy-retry-on",
		"x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-upstream-alt-stat-name",
		"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
		"x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms",
		"x-envoy-force-trace", "x-envoy-ip-tags", "x-envoy-original-url",
		"x-envoy-hedge-on-per-try-timeout", "x-envoy-internal",
	}
	edgeHeaders = []string{
		"x-envoy-decorator-operation", "x-envoy-downstream-service-cluster",
		"x-envoy-downstream-service-node", "x-envoy-external-address",
	}
)

// sanitize applies use_remote_address: every request is external (no
// internal_address_config), so the internal x-envoy-* headers it brought are
// dropped, x-forwarded-for gets the peer (the node's address for a loopback
// peer) and x-request-id is generated afresh (preserve_external_request_id
// false).
func (st *stream) sanitize() {
	h := st.r.Header
	for _, k := range []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"} {
		h.Del(k)
	}
	if st.hcm.useRemoteAddress {
		for _, k := range internalHeaders {
			h.Del(k)
		}
		for _, k := range edgeHeaders {
			h.Del(k)
		}
		peer, _, err := net.SplitHostPort(st.remote)
		if err != nil {
			peer = st.remote
		}
		xff := peer
		if ip := net.ParseIP(peer); ip != nil && ip.IsLoopback() {
			xff = nodeAddress()
		}
		if prior := h.Get("x-forwarded-for"); prior != "" {
			h.Set("x-forwarded-for", prior+","+xff)
		} else {
			h.Set("x-forwarded-for", xff)
		}
		h.Set("x-envoy-external-address", peer)
		h.Set("x-request-id", newUUID())
	} else {
		for _, k := range internalHeaders {
			h.Del(k)
		}
		if h.Get("x-request-id") == "" {
			h.Set("x-request-id", newUUID())
		}
	}
	h.Set("x-forwarded-proto", "http")
}

// nodeAddress is the address Envoy's local_info gives the node when the
// bootstrap names none (Network::Utility::getLocalAddress): the first IPv4
// address of an interface that is up and not loopback, in the kernel's
// order, else 127.0.0.1. A loopback peer is recorded as it in
// x-forwarded-for (conn_manager_utility.cc mutateRequestHeaders).
var nodeAddress = sync.OnceValue(func() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
})

// headerBytes is the size of the request head as Envoy's HTTP/1 parser
// (Balsa, the default) holds it to max_request_headers_kb: the request line
// and every header line with their CRLFs, and the blank line that ends
// them; real Envoy answers 431 from one byte over. net/http keeps the
// Transfer-Encoding and Trailer lines elsewhere; they count too.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	line := func(k, v string) { n += len(k) + len(": ") + len(v) + 2 }
	line("Host", r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			line(k, v)
		}
	}
	if len(r.TransferEncoding) > 0 {
		line("Transfer-Encoding", strings.Join(r.TransferEncoding, ", "))
	}
	if len(r.Trailer) > 0 {
		line("Trailer", strings.Join(slices.Sorted(maps.Keys(r.Trailer)), ", "))
	}
	return n + 2
}

// maxHeadersCount is Envoy's default max_headers_count
// (common_http_protocol_options, which Custos does not set).
const maxHeadersCount = 100

// headerCount counts header lines, Host included.
func headerCount(r *http.Request) int {
	n := 1
	for _, vs := range r.Header {
		n += len(vs)
	}
	return n
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// match picks the virtual host by :authority (exact domain first, then "*")
// and its first route whose path matcher accepts the path.
func (t *routeTable) match(authority, path string) *route {
	p := path
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	var vh *virtualHost
	for _, v := range t.vhosts {
		for _, d := range v.domains {
			if d == authority {
				vh = v
				break
			}
		}
		if vh != nil {
			break
		}
	}
	if vh == nil {
		for _, v := range t.vhosts {
			for _, d := range v.domains {
				if d == "*" {
					vh = v
					break
				}
			}
			if vh != nil {
				break
			}
		}
	}
	if vh == nil {
		return nil
	}
	for _, r := range vh.routes {
		if r.path != "" && p == r.path {
			return r
		}
		if r.path == "" && strings.HasPrefix(p, r.prefix) {
			return r
		}
	}
	return nil
}

// localReply answers the request with a reply of the data plane's own,
// rewritten by local_reply_config (Envoy's sendLocalReply), then, like any
// response, passed through the encoder side of the filters: ext_proc
// processes it unless it is done with the request or the response had
// already begun (real Envoy 1.40 sends every local reply to the processor,
// on a stream of its own when ext_proc had not run, as for an ext_authz
// denial), and ext_authz adds its headers.
func (st *stream) localReply(code int, body, details, flags string, modify func(http.Header)) {
	h := http.Header{}
	if modify != nil {
		modify(h)
	}
	ctype := h.Get("content-type")
	// Response flags stay on the stream: a reply that replaces another
	// (the processor's answer to an ext_authz denial) still shows UAEX.
	if flags != "" && !slices.Contains(strings.Split(st.flags, ","), flags) {
		if st.flags != "" {
			st.flags += ","
		}
		st.flags += flags
	}
	rc := &replyContext{request: st.r, resp: h, code: code, details: details, flags: st.flags, body: body, metadata: st.metadataValue}
	if st.hcm.localReply != nil {
		code, body = st.hcm.localReply.apply(rc, h)
	}
	if body != "" && h.Get("content-type") == "" {
		if ctype == "" {
			ctype = "text/plain"
		}
		h.Set("content-type", ctype)
	}
	if body != "" {
		// Without a body the headers carry no content-length: the
		// processor does not see one (the codec writes content-length: 0).
		h.Set("content-length", strconv.Itoa(len(body)))
	}
	st.encode(response{code: code, header: h, body: strings.NewReader(body), length: int64(len(body))})
}

// close ends the ext_proc stream, if one is still open, and the stream's
// timers.
func (st *stream) close() {
	if st.idle != nil {
		st.idle.Stop()
	}
	st.stopRequestStream()
	st.endProc()
	st.cancel(nil)
}

var errIdle = errors.New("stream idle timeout")

// startIdleTimer arms stream_idle_timeout, or the route's idle_timeout
// which overrides it once a route is chosen. Activity on the stream (body
// bytes, headers either way) re-arms it; an ext_proc hold is not activity.
func (st *stream) startIdleTimer() {
	d := st.hcm.streamIdleTimeout
	if st.route != nil && st.route.idleTimeout > 0 {
		d = st.route.idleTimeout
	}
	if d <= 0 {
		return
	}
	st.idleFor = d
	st.idle = time.AfterFunc(d, func() {
		st.cancel(errIdle)
		// Cut short whatever waits on the client: a stalled upload, or a
		// client that stopped reading a response already under way. A
		// request read whole is left alone: a read deadline would only
		// fail net/http's background read of the connection.
		rc := http.NewResponseController(st.w)
		if !st.requestReceived.Load() {
			_ = rc.SetReadDeadline(time.Now())
		}
		if st.wroteHeader.Load() {
			_ = rc.SetWriteDeadline(time.Now())
		}
	})
}

// bodyReadFailed answers a request whose body could not be read: the idle
// timeout cut it, or the client went away.
func (st *stream) bodyReadFailed() {
	if st.ctx.Err() != nil {
		st.idleReply()
		return
	}
	st.endProc() // the client went away
	st.localReply(http.StatusBadRequest, "", "downstream_remote_disconnect", "", nil)
}

func (st *stream) touch() {
	if st.idle != nil && st.ctx.Err() == nil {
		st.idle.Reset(st.idleFor)
	}
}

// idleReply answers a stream whose idle timeout fired: if nothing was sent
// yet, 408 while the request was still arriving and 504 once it had all
// arrived (Utility::maybeRequestTimeoutCode); else a reset. Like any local
// reply it goes through ext_proc, even while a message of the request
// awaits its reply (a hold): the processor gets the reply's headers on the
// same stream, under their own message timeout.
func (st *stream) idleReply() {
	if st.wroteHeader.Load() {
		st.endProc()
		panic(http.ErrAbortHandler)
	}
	st.idleReplying.Store(true)
	code := http.StatusRequestTimeout
	if st.requestReceived.Load() {
		code = http.StatusGatewayTimeout
	}
	st.localReply(code, "stream timeout", "stream_idle_timeout", "SI", nil)
}

// hasBody reports whether the request has a body to send upstream.
func (st *stream) hasBody() bool { return st.bodyLen != 0 }

// setBody replaces the request body with a buffered one.
func (st *stream) setBody(b []byte) {
	st.body, st.bodyLen = bytes.NewReader(b), int64(len(b))
	st.r.Header.Set("content-length", strconv.Itoa(len(b)))
	if len(b) == 0 {
		st.body = http.NoBody
	}
}

func (st *stream) setStreamFailure(f *procFailure) {
	st.failMu.Lock()
	st.streamFailure = f
	st.failMu.Unlock()
}

// takeStreamFailure returns (once) why a streamed request body failed.
func (st *stream) takeStreamFailure() *procFailure {
	st.failMu.Lock()
	defer st.failMu.Unlock()
	f := st.streamFailure
	st.streamFailure = nil
	return f
}

// takeStreamFailureIfAny stops a STREAMED request body after the upstream
// request failed, and answers with the processor's failure if that came
// first; it reports whether it answered.
func (st *stream) takeStreamFailureIfAny() bool {
	f := st.stopRequestStream()
	if f == nil {
		return false
	}
	if st.procFailed(f) {
		// The processor went away: Envoy would have forwarded the rest, but
		// the upstream request already failed.
		st.localReply(http.StatusServiceUnavailable, "", "upstream_reset_before_response_started{connection_failure}", "UF", nil)
	}
	return true
}

// eofNotifier marks the request received when its body ends.
type eofNotifier struct {
	r    io.Reader
	done *atomic.Bool
}

func (e *eofNotifier) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.done.Store(true)
	}
	return n, err
}

// metadataValue is the value at path in namespace of the stream's dynamic
// metadata, nil when absent.
func (st *stream) metadataValue(namespace string, path []string) *structpb.Value {
	st.mdMu.Lock()
	defer st.mdMu.Unlock()
	s := st.metadata[namespace]
	if s == nil || len(path) == 0 {
		return nil
	}
	v := s.GetFields()[path[0]]
	for _, k := range path[1:] {
		v = v.GetStructValue().GetFields()[k]
	}
	return v
}

// stripTrailingHostDot removes one trailing dot from the host part of host
// or host:port.
func stripTrailingHostDot(host string) string {
	if h, port, err := net.SplitHostPort(host); err == nil {
		if strings.HasSuffix(h, ".") {
			return net.JoinHostPort(strings.TrimSuffix(h, "."), port)
		}
		return host
	}
	return strings.TrimSuffix(host, ".")
}

// asciiLower lower-cases ASCII letters only.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
