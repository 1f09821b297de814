package dataplane

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// hopHeaders are connection-specific headers a proxy never forwards.
var hopHeaders = []string{"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}

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
		st.localReply(http.StatusServiceUnavailable, "", "upstream_reset_before_response_started{overflow}", "UO", nil)
		return
	}
	defer up.release()

	ctx := st.r.Context()
	if r.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	out := st.upstreamRequest(ctx, up, r)
	start := time.Now()
	resp, err := up.transport.RoundTrip(out)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			st.localReply(http.StatusGatewayTimeout, "", "upstream_response_timeout", "UT", nil)
		} else {
			st.localReply(http.StatusServiceUnavailable, "", "upstream_reset_before_response_started{connection_failure}", "UF", nil)
		}
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	resp.Header.Set("x-envoy-upstream-service-time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	st.encode(resp.StatusCode, resp.Header, resp.Body, resp.ContentLength, false)
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
	for _, k := range st.cfg.routes.headersRemoved {
		h.Del(k)
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
	length := st.r.ContentLength
	if st.bodyLen >= 0 {
		length = st.bodyLen
		h.Set("content-length", strconv.FormatInt(length, 10))
	}
	var body io.ReadCloser = http.NoBody
	if length != 0 {
		body = io.NopCloser(st.body)
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
	}
	return out.WithContext(ctx)
}

// encode runs the response (upstream or local) through the encoder side of
// the filters, ext_proc then ext_authz, and writes it to the client.
func (st *stream) encode(code int, h http.Header, body io.Reader, length int64, local bool) {
	if st.done {
		return
	}
	st.done = true
	if p := st.proc; p != nil && p.mode.responseHeaders {
		out := p.exchange(st, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: responseHeaderMap(code, h), EndOfStream: length == 0},
		}}, "response_headers")
		switch {
		case out.fail != nil:
			st.done = false
			if !st.procFailed(out.fail) {
				return
			}
			st.done = true
		case out.immediate != nil:
			st.done = false
			st.immediate(out.immediate)
			return
		default:
			common := out.resp.GetResponseHeaders().GetResponse()
			if s := applyHeaderMutation(h, common.GetHeaderMutation(), true); s != 0 {
				code = s
			}
			if common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
				b := mutateBody(nil, common.GetBodyMutation())
				body, length = strings.NewReader(string(b)), int64(len(b))
				h.Del("content-length")
				p.mode.responseBody = procfilterv3.ProcessingMode_NONE
				p.mode.responseTrailers = false
			}
			if mo := out.resp.GetModeOverride(); mo != nil && p.cfg.allowModeOverride {
				p.mode = overrideMode(p.mode, mo)
			}
		}
	}
	if p := st.proc; p != nil && p.mode.responseBody == procfilterv3.ProcessingMode_BUFFERED {
		b, err := io.ReadAll(io.LimitReader(body, bufferLimit+1))
		if err != nil || len(b) > bufferLimit {
			st.done = false
			st.proc = nil
			p.close()
			st.localReply(http.StatusInternalServerError, "", "response_payload_too_large", "", nil)
			return
		}
		out := p.exchange(st, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: b, EndOfStream: true},
		}}, "response_body")
		switch {
		case out.fail != nil:
			st.done = false
			if !st.procFailed(out.fail) {
				return
			}
			st.done = true
		case out.immediate != nil:
			st.done = false
			st.immediate(out.immediate)
			return
		default:
			common := out.resp.GetResponseBody().GetResponse()
			if s := applyHeaderMutation(h, common.GetHeaderMutation(), true); s != 0 {
				code = s
			}
			if bm := common.GetBodyMutation(); bm != nil {
				b = mutateBody(b, bm)
			}
		}
		body, length = strings.NewReader(string(b)), int64(len(b))
		h.Set("content-length", strconv.Itoa(len(b)))
	}
	if st.authzRan {
		for _, op := range st.authzResponseHeaders {
			if op.overwrite {
				h.Set(op.key, op.value)
			} else {
				h.Add(op.key, op.value)
			}
		}
	}
	st.write(code, h, body, length)
}

func (st *stream) write(code int, h http.Header, body io.Reader, length int64) {
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
	st.w.WriteHeader(code)
	if body == nil || length == 0 || st.r.Method == http.MethodHead {
		return
	}
	fl, _ := st.w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := st.w.Write(buf[:n]); werr != nil {
				panic(http.ErrAbortHandler)
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			// The upstream broke mid-body: the client gets a reset, never a
			// response that looks complete.
			panic(http.ErrAbortHandler)
		}
	}
}
