package dataplane

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// hopHeaders are connection-specific headers a proxy never forwards.
var hopHeaders = []string{"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"}

// router forwards the request to its route's cluster, or answers with the
// route's direct response, then hands the response to the encoder side.
func (st *stream) router() {
	r := st.route
	switch {
	case r == nil:
		st.localReply(http.StatusNotFound, "", "route_not_found", "NR", nil)
		return
	case r.direct != nil:
		st.localReply(r.direct.status, r.direct.body, "direct_response", "", nil)
		return
	}
	up := st.cfg.upstreams[r.cluster]
	if up == nil || up.transport == nil {
		st.localReply(http.StatusServiceUnavailable, "", "cluster_not_found", "NC", nil)
		return
	}
	if err := up.acquire(); err != nil {
		st.localReply(http.StatusServiceUnavailable, resetBody("overflow"), "upstream_reset_before_response_started{overflow}", "UO", nil)
		return
	}
	defer up.release()

	ctx := st.ctx
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	out := st.upstreamRequest(ctx, up, r)
	start := time.Now()
	resp, err := up.transport.RoundTrip(out)
	if err != nil {
		if st.bodyCodecError() {
			return
		}
		switch {
		case st.takeStreamFailureIfAny():
		case st.ctx.Err() != nil:
			st.idleReply()
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			st.localReply(http.StatusGatewayTimeout, "upstream request timeout", "response_timeout", "UT", nil)
		default:
			reason, details, flag := upstreamFailure(err)
			st.localReply(http.StatusServiceUnavailable, resetBody(reason), "upstream_reset_before_response_started{"+details+"}", flag, nil)
		}
		return
	}
	defer resp.Body.Close()
	st.touch()
	if st.upgrade != "" && resp.StatusCode == http.StatusSwitchingProtocols {
		st.tunnel(resp)
		return
	}
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	if !st.hcm.suppressEnvoyHeaders {
		resp.Header.Set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	}
	// Envoy's HTTP/1 codec keeps transfer-encoding in the headers the
	// filters see, and drops trailers (enable_trailers false): only their
	// declaration goes on.
	if len(resp.TransferEncoding) > 0 {
		resp.Header.Set("transfer-encoding", strings.Join(resp.TransferEncoding, ","))
	}
	if len(resp.Trailer) > 0 {
		resp.Header.Set("trailer", strings.Join(slices.Sorted(maps.Keys(resp.Trailer)), ","))
	}
	st.encode(response{code: resp.StatusCode, header: resp.Header, body: resp.Body, length: resp.ContentLength})
}

// resetBody is the router's reply when the upstream request failed before
// the response began.
func resetBody(reason string) string {
	return "upstream connect error or disconnect/reset before headers. reset reason: " + reason
}

// upstreamFailure describes a failed upstream request as Envoy's router
// does: the reset reason, the details it puts between braces and the
// response flag. A connection that could not be made is a remote connection
// failure (UF), with the socket error as Envoy prints it (strerror); one
// that closed before the response is a connection termination (UC).
func upstreamFailure(err error) (reason, details, flag string) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return "connection timeout", "connection_timeout", "UF"
		}
		details = "remote_connection_failure"
		var errno syscall.Errno
		if errors.As(err, &errno) {
			details += "|delayed_connect_error:_" + strings.ReplaceAll(strerror(errno), " ", "_")
		}
		return "remote connection failure", details, "UF"
	}
	return "connection termination", "connection_termination", "UC"
}

// strerror is errno's message as C's strerror spells it ("Connection
// refused"): Go's, capitalised.
func strerror(errno syscall.Errno) string {
	s := errno.Error()
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// upstreamRequest is the request as the upstream receives it: prefix
// rewritten, route configuration headers removed, host rewritten.
func (st *stream) upstreamRequest(ctx context.Context, up *upstream, r *route) *http.Request {
	p, q := st.path, ""
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p, q = p[:i], p[i+1:]
	}
	if r.prefixRewrite != "" {
		if r.path != "" {
			p = r.prefixRewrite
		} else {
			p = r.prefixRewrite + strings.TrimPrefix(p, r.prefix)
		}
	}
	h := st.r.Header.Clone()
	for _, k := range hopHeaders {
		h.Del(k)
	}
	if st.upgrade != "" {
		// An upgrade the route allows goes on as one (Envoy's router keeps
		// connection: upgrade and the upgrade header for it).
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", st.upgrade)
	}
	for _, k := range st.cfg.routes.headersRemoved {
		h.Del(k)
	}
	// The router's own headers, unless suppress_envoy_headers: the timeout
	// it gives the upstream, and the path before a rewrite.
	if r.timeout > 0 && !st.hcm.suppressEnvoyHeaders {
		h.Set("x-envoy-expected-rq-timeout-ms", strconv.FormatInt(r.timeout.Milliseconds(), 10))
	}
	if r.prefixRewrite != "" && !st.hcm.suppressEnvoyHeaders {
		h.Set("x-envoy-original-path", st.path)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // Go would add its own
	}
	host := st.r.Host
	if r.hostRewrite != "" {
		host = r.hostRewrite
	}
	scheme := "http"
	if up.cfg.tls != nil {
		scheme = "https"
	}
	// bodyLen is authoritative: filters may have replaced or streamed the body.
	length := st.bodyLen
	if length >= 0 {
		h.Set("content-length", strconv.FormatInt(length, 10))
	} else {
		h.Del("content-length")
	}
	var body io.ReadCloser = http.NoBody
	if length != 0 {
		body = io.NopCloser(st.body)
	}
	var trailer http.Header
	if len(st.trailerKeys) > 0 {
		// The declaration goes on (Go's transport writes it from Trailer),
		// the trailers never: the body goes chunked with none.
		trailer = http.Header{}
		for _, k := range st.trailerKeys {
			trailer[k] = nil
		}
		length = -1
		h.Del("content-length")
	}
	out := &http.Request{
		Method:        st.r.Method,
		URL:           &url.URL{Scheme: scheme, Host: up.cfg.addr, Opaque: p, RawQuery: q},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Host:          host,
		Body:          body,
		ContentLength: length,
		Trailer:       trailer,
	}
	return out.WithContext(ctx)
}

// response is what the encoder side carries to the client.
type response struct {
	code   int
	header http.Header
	body   io.Reader
	length int64 // -1 when unknown
}

// encode runs the response (upstream or local) through the encoder side of
// the filters, ext_proc then ext_authz, and writes it to the client. A local
// reply that comes once a response has entered the encoder side goes
// straight to the client.
func (st *stream) encode(r response) {
	if st.wroteHeader.Load() {
		return
	}
	if st.responseStarted {
		st.endProc()
		st.writeHeader(r.code, r.header, r.length)
		st.writeBody(r.body, r.length)
		return
	}
	// Request body messages come before the response headers message.
	if st.requestStreaming != nil {
		select {
		case <-st.requestStreaming:
		case <-st.ctx.Done():
		}
		if f := st.stopRequestStream(); f != nil {
			if !st.procFailed(f) {
				return
			}
		}
	}
	if st.proc != nil && st.proc.detached.Load() {
		st.endProc()
	}
	st.responseStarted = true
	if !st.responseProc() {
		return
	}
	if p := st.proc; p != nil && p.mode.responseHeaders && !p.responseDone {
		hasBody := r.length != 0
		out := p.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: responseHeaderMap(r.code, r.header), EndOfStream: !hasBody},
		}}, "response_headers")
		common, ok := st.handled(out, func(pr *extprocv3.ProcessingResponse) *extprocv3.CommonResponse {
			return pr.GetResponseHeaders().GetResponse()
		})
		if !ok {
			return
		}
		if common != nil {
			s, err := applyHeaderMutation(r.header, common.GetHeaderMutation(), p.keepsLength(true))
			if err != nil {
				st.procFailed(&procFailure{status: p.cfg.statusOnError, details: mutationDetails(err)})
				return
			}
			if s != 0 {
				r.code = s
			}
			if mo := out.resp.GetModeOverride(); mo != nil && p.cfg.allowModeOverride {
				p.mode = overrideMode(p.mode, mo)
			}
			if common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
				// No more body messages this way; the body is
				// replaced only when the reply carries one.
				p.responseDone = true
				if bm := common.GetBodyMutation(); bm != nil {
					b := mutateBody(nil, bm)
					r.body, r.length = bytes.NewReader(b), int64(len(b))
					r.header.Del("content-length")
				}
			}
		}
	}
	p := st.proc
	mode := procfilterv3.ProcessingMode_NONE
	if p != nil && !p.responseDone && r.length != 0 {
		mode = p.mode.responseBody
	}
	switch mode {
	case procfilterv3.ProcessingMode_BUFFERED, procfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		partial := mode == procfilterv3.ProcessingMode_BUFFERED_PARTIAL
		if !p.keepsLength(true) {
			r.header.Del("content-length")
		}
		if !st.bufferedResponseBody(p, &r, partial) {
			return
		}
	case procfilterv3.ProcessingMode_STREAMED:
		r.header.Del("content-length")
		st.addAuthzHeaders(r.header)
		st.writeHeader(r.code, r.header, -1)
		if f := p.streamBody(st, r.body, r.length, true, st.writeChunk); f != nil {
			// The headers are out: the client gets a reset, never the
			// unprocessed rest of the body.
			st.endProc()
			panic(http.ErrAbortHandler)
		}
		st.endProc()
		return
	}
	// No message can follow: the stream ends (and gives back its
	// circuit-breaker slot) before the client has the response.
	st.endProc()
	st.addAuthzHeaders(r.header)
	st.writeHeader(r.code, r.header, r.length)
	st.writeBody(r.body, r.length)
}

// bufferedResponseBody sends the response body in one message (BUFFERED,
// 500 over the buffer limit) or its first bufferLimit bytes
// (BUFFERED_PARTIAL) and applies the reply. It returns false when it
// answered the request itself.
func (st *stream) bufferedResponseBody(p *procStream, r *response, partial bool) bool {
	buf, rest, over, err := readUpTo(r.body, bufferLimit)
	if err != nil {
		st.endProc()
		st.localReply(http.StatusBadGateway, "", "upstream_reset_after_response_started", "UR", nil)
		return false
	}
	st.touch()
	if over && !partial {
		st.localReply(http.StatusInternalServerError, "Internal Server Error", "response_payload_too_large", "", nil)
		return false
	}
	out := p.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: buf, EndOfStream: !over},
	}}, "response_body")
	common, ok := st.handled(out, func(pr *extprocv3.ProcessingResponse) *extprocv3.CommonResponse {
		return pr.GetResponseBody().GetResponse()
	})
	if !ok {
		return false
	}
	body := buf
	if common != nil {
		s, err := applyHeaderMutation(r.header, common.GetHeaderMutation(), p.keepsLength(true))
		if err != nil {
			return st.procFailed(&procFailure{status: p.cfg.statusOnError, details: mutationDetails(err)})
		}
		if s != 0 {
			r.code = s
		}
		body = mutateBody(buf, common.GetBodyMutation())
		if !partial && p.mode.responseHeaders {
			if err := checkContentLength(r.header, body); err != nil {
				return st.procFailed(&procFailure{status: p.cfg.statusOnError, details: contentLengthDetails})
			}
		}
	}
	if over {
		r.body, r.length = io.MultiReader(bytes.NewReader(body), rest), -1
		return true
	}
	r.body, r.length = bytes.NewReader(body), int64(len(body))
	if r.header.Get("trailer") != "" {
		// Declared trailers keep the body chunked.
		r.header.Del("content-length")
		r.length = -1
	} else if r.header.Get("content-length") == "" && !partial {
		r.header.Set("content-length", strconv.Itoa(len(body)))
	}
	return true
}

// addAuthzHeaders is ext_authz's encoder side: response_headers_to_add.
func (st *stream) addAuthzHeaders(h http.Header) {
	if !st.authzRan {
		return
	}
	// append_action is read here: APPEND_IF_EXISTS_OR_ADD (the zero value)
	// adds, as does append true (ext_authz.cc encodeHeaders).
	for _, o := range st.authzResponseHeaders {
		applyOption(h, o, true)
	}
}

func (st *stream) writeHeader(code int, h http.Header, length int64) {
	dst := st.w.Header()
	for k, vs := range h {
		dst[http.CanonicalHeaderKey(k)] = vs
	}
	for _, k := range hopHeaders {
		dst.Del(k)
	}
	if length < 0 {
		dst.Del("content-length")
	}
	if st.closeConnection || st.codec.isDraining() {
		dst.Set("connection", "close")
	}
	// server_header_transformation OVERWRITE, server_name unset.
	dst.Set("server", "envoy")
	st.wroteHeader.Store(true)
	st.w.WriteHeader(code)
	st.touch()
}

func (st *stream) writeChunk(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := st.w.Write(b); err != nil {
		return err
	}
	if fl, ok := st.w.(http.Flusher); ok {
		fl.Flush()
	}
	st.touch()
	return nil
}

// copyBuffers keeps the response copy buffers out of each request's garbage.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

func (st *stream) writeBody(body io.Reader, length int64) {
	if body == nil || length == 0 || st.r.Method == http.MethodHead {
		return
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if st.writeChunk(buf[:n]) != nil {
				panic(http.ErrAbortHandler)
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// The upstream broke mid-body: the client gets a reset, never a
			// response that looks complete.
			panic(http.ErrAbortHandler)
		}
	}
}

// tunnel completes an upgrade the upstream accepted (101): the response
// headers go through ext_proc like any other (no body follows in HTTP
// terms), then the client's connection and the upstream's are spliced until
// either side ends. Nothing after the upgrade is parsed, processed or
// masked.
func (st *stream) tunnel(resp *http.Response) {
	up, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		st.localReply(http.StatusBadGateway, "", "upgrade_failed", "UR", nil)
		return
	}
	h := resp.Header.Clone()
	if p := st.proc; p != nil && p.mode.responseHeaders && !p.responseDone {
		out := p.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: responseHeaderMap(resp.StatusCode, h), EndOfStream: false},
		}}, "response_headers")
		common, ok := st.handled(out, func(pr *extprocv3.ProcessingResponse) *extprocv3.CommonResponse {
			return pr.GetResponseHeaders().GetResponse()
		})
		if !ok {
			return
		}
		if common != nil {
			if _, err := applyHeaderMutation(h, common.GetHeaderMutation(), false); err != nil {
				st.procFailed(&procFailure{status: p.cfg.statusOnError, details: mutationDetails(err)})
				return
			}
		}
	}
	st.endProc()
	st.addAuthzHeaders(h)
	hj, ok := st.w.(http.Hijacker)
	if !ok {
		st.localReply(http.StatusBadGateway, "", "upgrade_failed", "", nil)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	st.wroteHeader.Store(true)
	client, pending := conn, []byte(nil)
	if cc, ok := conn.(*codecConn); ok {
		client, pending = cc.raw()
	}
	defer conn.Close()
	var b strings.Builder
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", resp.Header.Get("Upgrade"))
	h.Del("content-length")
	for k, vs := range h {
		for _, v := range vs {
			b.WriteString(http.CanonicalHeaderKey(k) + ": " + v + "\r\n")
		}
	}
	b.WriteString("\r\n")
	if _, err := rw.WriteString(b.String()); err != nil {
		return
	}
	if err := rw.Flush(); err != nil {
		return
	}
	if len(pending) > 0 {
		if _, err := up.Write(pending); err != nil {
			return
		}
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, up); done <- struct{}{} }()
	<-done
	_ = up.Close()
	_ = client.Close()
	<-done
}
