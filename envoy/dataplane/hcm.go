package dataplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
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
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
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
	peer   string // the client certificate's principal (source.principal), "" for none
	// upgrade is the Upgrade header of an upgrade the route allowed for
	// this request (websocket, SPDY/3.1), "" for none.
	upgrade string
	local   string // listener address

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
	// codec is the connection's codec and head the request as it read it.
	codec *codecConn
	head  *requestHead
	// connect: a CONNECT request, which has no :path and no end.
	connect bool
}

func (m *connManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := m.dp.active.Load()
	cc, _ := r.Context().Value(codecConnKey{}).(*codecConn)
	var head *requestHead
	if cc != nil {
		head = cc.takeHead()
	}
	if cfg == nil || head == nil {
		panic(http.ErrAbortHandler)
	}
	st := &stream{
		dp: m.dp, cfg: cfg, hcm: cfg.listener.hcm, w: w, r: r, codec: cc, head: head,
		// Envoy's stream ids are random 64-bit numbers.
		id:       mathrand.Uint64(),
		metadata: map[string]*structpb.Struct{},
		body:     r.Body,
		bodyLen:  r.ContentLength,
		connect:  head.connect,
	}
	// The request as the codec read it; net/http only framed it.
	r.Method, r.Host, r.RequestURI = head.method, head.authority, head.path
	st.path = head.path // normalised by preparePath
	r.Header = head.header
	if head.err != nil {
		r.Header = http.Header{} // refused before any header was kept
	}
	if r.ContentLength == 0 {
		st.body = http.NoBody
		st.requestReceived.Store(true)
	} else {
		st.body = &eofNotifier{r: r.Body, done: &st.requestReceived}
	}
	st.trailerKeys = trailerKeys(r.Header)
	st.ctx, st.cancel = context.WithCancelCause(r.Context())
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		st.local = la.String()
	}
	st.remote = r.RemoteAddr
	if cc, ok := r.Context().Value(codecConnKey{}).(*codecConn); ok {
		st.peer = peerPrincipal(cc.Conn)
	}
	defer st.close()
	st.decode()
}

// trailerKeys are the trailers a request declares (its trailer header),
// which the router declares upstream; the trailers themselves never pass
// (Envoy's HTTP/1 codec drops them, enable_trailers false).
func trailerKeys(h http.Header) []string {
	var keys []string
	for _, v := range h.Values("Trailer") {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			switch k {
			case "", "Transfer-Encoding", "Trailer", "Content-Length":
				continue
			}
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// decode runs the request through the connection manager and the filters,
// in the order of Envoy's ActiveStream::decodeHeaders.
func (st *stream) decode() {
	if e := st.head.err; e != nil {
		st.codecErrorReply(e)
		return
	}
	// Envoy answers Expect: 100-continue itself, before any filter, and
	// removes it (proxy_100_continue false).
	if st.head.expectContinue {
		st.w.WriteHeader(http.StatusContinue)
	}
	// Requests refused before the headers are sanitised: their replies
	// carry the request's own x-request-id, if any.
	if !st.head.hasHost {
		st.closeConnection = true
		st.localReply(http.StatusBadRequest, "", "missing_host_header", "", nil)
		return
	}
	if !st.preparePath() {
		return
	}
	if st.hcm.stripTrailingHostDot {
		st.r.Host = stripTrailingHostDot(st.r.Host)
	}
	if st.hcm.stripAnyHostPort {
		// The connection manager rewrites :authority itself: the filters
		// and the upstream see it without the port.
		st.r.Host = stripHostPort(st.r.Host)
	}
	requested := ""
	if st.head.upgrade {
		requested = st.r.Header.Get("Upgrade") // sanitize drops it
	}
	st.sanitize()
	// Virtual hosts match case-insensitively in ASCII only
	// (absl::AsciiStrToLower): "ſ" is not "s" to Envoy.
	st.authority = asciiLower(st.r.Host)
	if !st.connect { // no route Custos emits matches CONNECT (connect_matcher)
		st.route = st.cfg.routes.match(st.authority, st.path)
	}
	st.startIdleTimer()
	if st.head.upgrade && st.route != nil {
		// After an upgrade the connection is the tunnel's, or closes.
		st.closeConnection = true
		if !st.route.upgrades[strings.ToLower(requested)] {
			// The route does not allow this upgrade (upgrade_configs):
			// refused before the filters decode.
			st.localReply(http.StatusForbidden, "", "upgrade_failed", "", nil)
			return
		}
		st.upgrade = requested
	}
	if st.connect {
		// What follows a CONNECT is never read as HTTP again.
		st.closeConnection = true
	}
	if e := st.head.bodyErr; e != nil {
		st.codecErrorReply(e)
		return
	}

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

// codecErrorReply answers a request the HTTP/1 codec refused. In Envoy that
// reply comes from a codec error: ext_proc, when it processes responses,
// opens its stream for the reply and waits, and the codec resets the stream
// meanwhile, so the client gets no reply at all and its connection is
// closed. Without it, the reply (connection: close) renders no request
// header of a refused head: its x-request-id is nobody's.
func (st *stream) codecErrorReply(e *codecError) {
	st.closeConnection = true
	if !e.filtered && st.procProcessesReplies() {
		// A stream already open gets the reply's headers before the reset
		// (Envoy writes them before it resets the stream; here the reset
		// waits a moment for them to go, or it could overtake them).
		if p := st.proc; p != nil && p.mode.responseHeaders && !p.responseDone && !st.responseStarted {
			r := st.localResponse(e.status, e.body, e.details, "", nil)
			if p.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
				ResponseHeaders: &extprocv3.HttpHeaders{Headers: responseHeaderMap(r.code, r.header), EndOfStream: r.length == 0},
			}}, "response_headers") == nil {
				// The client is gone (its context too): wait on the
				// stream itself.
				select {
				case <-p.replies:
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
		st.endProc()
		panic(http.ErrAbortHandler)
	}
	st.localReply(e.status, e.body, e.details, "", nil)
}

// procProcessesReplies reports whether ext_proc would process a local reply
// now.
func (st *stream) procProcessesReplies() bool {
	cfg := st.hcm.extProc
	if cfg == nil || st.procOver || (st.route != nil && st.route.procDisabled) {
		return false
	}
	mode := cfg.mode
	if st.proc != nil {
		mode = st.proc.mode
	}
	return mode.responseHeaders || mode.responseBody != procfilterv3.ProcessingMode_NONE
}

// bodyCodecError answers a request whose body the codec refused (a
// malformed chunk) and reports whether it did: a codec error, whatever the
// headers' fate (they may have reached the upstream).
func (st *stream) bodyCodecError() bool {
	e := st.codec.bodyError()
	if e == nil {
		return false
	}
	st.stopRequestStream()
	st.codecErrorReply(e)
	return true
}

// preparePath applies escaped-slash rejection, normalize_path and
// merge_slashes to :path, before routing and before any filter sees it. A
// CONNECT has no :path.
func (st *stream) preparePath() bool {
	if st.connect {
		return true
	}
	raw := st.head.path
	if !strings.HasPrefix(raw, "/") {
		// OPTIONS *, or an absolute-form target without a path.
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

// maxHeadersCount is Envoy's default max_headers_count
// (common_http_protocol_options, which Custos does not set).
const maxHeadersCount = 100

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
	st.encode(st.localResponse(code, body, details, flags, modify))
}

// localResponse is a local reply as local_reply_config renders it.
func (st *stream) localResponse(code int, body, details, flags string, modify func(http.Header)) response {
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
	rc := &replyContext{request: st.r, path: st.path, resp: h, code: code, details: details, flags: st.flags, body: body, metadata: st.metadataValue}
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
	return response{code: code, header: h, body: strings.NewReader(body), length: int64(len(body))}
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
	if st.bodyCodecError() {
		return
	}
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

// portStart is where host's port begins (its last colon), -1 when it has
// none: a colon inside an IPv6 literal's brackets is no port
// (HeaderUtility::getPortStart).
func portStart(host string) int {
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return -1
	}
	if j := strings.LastIndexByte(host, ']'); j >= 0 && j > i {
		return -1
	}
	return i
}

// stripTrailingHostDot removes one dot before the port, or at the end when
// there is no port (HeaderUtility::stripTrailingHostDot).
func stripTrailingHostDot(host string) string {
	if i := portStart(host); i >= 0 {
		if i > 0 && host[i-1] == '.' {
			return host[:i-1] + host[i:]
		}
		return host
	}
	return strings.TrimSuffix(host, ".")
}

// stripHostPort removes a numeric port (HeaderUtility::stripPortFromHost
// for strip_any_host_port): "[::1]:80" is "[::1]", "a:b" stays.
func stripHostPort(host string) string {
	i := portStart(host)
	if i < 0 {
		return host
	}
	port := strings.TrimPrefix(host[i+1:], "+")
	if port == "" {
		return host
	}
	if _, err := strconv.ParseUint(port, 10, 32); err != nil {
		return host
	}
	return host[:i]
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
