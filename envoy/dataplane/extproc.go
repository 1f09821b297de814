package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// procStream is one request's ext_proc stream (Envoy opens one per request,
// when the first message is due).
type procStream struct {
	cfg     *extProcConfig
	mode    processingMode
	client  extprocv3.ExternalProcessor_ProcessClient
	cancel  context.CancelFunc
	replies chan procReply
}

type procReply struct {
	resp *extprocv3.ProcessingResponse
	err  error
}

// procFailure is why a message got no usable reply.
type procFailure struct {
	status  int
	details string
	// closed is true when the processor ended the stream with OK: Envoy
	// then carries on without it, whatever failure_mode_allow says.
	closed bool
}

// procOutcome is the reply to one message.
type procOutcome struct {
	resp      *extprocv3.ProcessingResponse
	immediate *extprocv3.ImmediateResponse
	fail      *procFailure
}

func (st *stream) openProc(cfg *extProcConfig) (*procStream, *procFailure) {
	up := st.cfg.upstreams[cfg.cluster]
	if up == nil || up.grpc == nil {
		return nil, &procFailure{status: cfg.statusOnError, details: "ext_proc_error_gRPC_error_14"}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(st.r.Context()))
	client, err := extprocv3.NewExternalProcessorClient(up.grpc).Process(ctx)
	if err != nil {
		cancel()
		return nil, &procFailure{status: cfg.statusOnError, details: grpcDetails(err)}
	}
	p := &procStream{cfg: cfg, mode: cfg.mode, client: client, cancel: cancel, replies: make(chan procReply, 1)}
	go func() {
		for {
			resp, err := client.Recv()
			select {
			case p.replies <- procReply{resp, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return p, nil
}

func grpcDetails(err error) string {
	return "ext_proc_error_gRPC_error_" + strconv.Itoa(int(status.Code(err)))
}

// close half-closes and then cancels the stream, as Envoy does after the
// last expected reply.
func (p *procStream) close() {
	_ = p.client.CloseSend()
	p.cancel()
}

// exchange sends one message and waits for its reply under message_timeout.
// A reply that carries only override_message_timeout restarts the timer once
// for this message, within max_message_timeout.
func (p *procStream) exchange(st *stream, req *extprocv3.ProcessingRequest, want string) procOutcome {
	req.MetadataContext = st.forwardedMetadata(p.cfg)
	if err := p.client.Send(req); err != nil {
		return procOutcome{fail: p.streamEnded(err)}
	}
	timer := time.NewTimer(p.cfg.messageTimeout)
	defer timer.Stop()
	overridden := false
	for {
		select {
		case <-timer.C:
			return procOutcome{fail: &procFailure{status: http.StatusGatewayTimeout, details: "ext_proc_error_message_timeout"}}
		case r := <-p.replies:
			if r.err != nil {
				return procOutcome{fail: p.streamEnded(r.err)}
			}
			resp := r.resp
			if d := resp.GetOverrideMessageTimeout(); d != nil && resp.GetResponse() == nil {
				t := d.AsDuration()
				if p.cfg.maxMessageTimeout == 0 || overridden || t < time.Millisecond || t > p.cfg.maxMessageTimeout {
					continue // ignored, as Envoy ignores an override it may not apply
				}
				overridden = true
				if !timer.Stop() {
					select {
					case <-timer.C:
					default:
					}
				}
				timer.Reset(t)
				continue
			}
			st.receiveMetadata(p.cfg, resp.GetDynamicMetadata())
			if ir := resp.GetImmediateResponse(); ir != nil {
				return procOutcome{immediate: ir}
			}
			if kindOf(resp) != want {
				return procOutcome{fail: &procFailure{status: p.cfg.statusOnError, details: "ext_proc_error_spurious_message"}}
			}
			return procOutcome{resp: resp}
		}
	}
}

func (p *procStream) streamEnded(err error) *procFailure {
	if errors.Is(err, io.EOF) {
		return &procFailure{closed: true}
	}
	return &procFailure{status: p.cfg.statusOnError, details: grpcDetails(err)}
}

func kindOf(r *extprocv3.ProcessingResponse) string {
	switch r.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingResponse_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingResponse_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return "response_trailers"
	}
	return fmt.Sprintf("%T", r.GetResponse())
}

// forwardedMetadata is metadata_context: the forwarding namespaces of the
// stream's dynamic metadata.
func (st *stream) forwardedMetadata(cfg *extProcConfig) *corev3.Metadata {
	if len(cfg.forwardNamespaces) == 0 {
		return nil
	}
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	for _, ns := range cfg.forwardNamespaces {
		if s, ok := st.metadata[ns]; ok {
			md.FilterMetadata[ns] = s
		}
	}
	return md
}

// receiveMetadata writes a reply's dynamic_metadata, but only for the
// receiving namespaces.
func (st *stream) receiveMetadata(cfg *extProcConfig, md *structpb.Struct) {
	for ns, v := range md.GetFields() {
		allowed := false
		for _, r := range cfg.receiveNamespaces {
			if r == ns {
				allowed = true
			}
		}
		if s := v.GetStructValue(); allowed && s != nil {
			st.metadata[ns] = s
		}
	}
}

// procFailed applies a failure: the processor closing its stream, or
// failure_mode_allow, lets the request carry on without ext_proc; anything
// else answers with the failure's status. It returns true to carry on.
func (st *stream) procFailed(f *procFailure) bool {
	p := st.proc
	st.proc = nil
	if p != nil {
		p.close()
	}
	if f.closed || (p != nil && p.cfg.failureModeAllow) || (p == nil && st.hcm.extProc.failureModeAllow) {
		return true
	}
	st.localReply(f.status, "", f.details, "", nil)
	return false
}

// immediate answers with a processor's ImmediateResponse; the stream is done.
func (st *stream) immediate(ir *extprocv3.ImmediateResponse) {
	p := st.proc
	st.proc = nil
	if p != nil {
		p.close()
	}
	code := int(ir.GetStatus().GetCode())
	if code < 200 {
		code = 200
	}
	details := ir.GetDetails()
	if details == "" {
		details = "ext_proc_immediate_response"
	}
	st.localReply(code, string(ir.GetBody()), details, "", func(h http.Header) {
		if m := ir.GetHeaders(); m != nil {
			applyHeaderMutation(h, m, false)
		}
	})
}

// extProcRequest opens the stream and sends the request headers (and a
// buffered body). It returns false when it answered the request itself.
func (st *stream) extProcRequest(cfg *extProcConfig) bool {
	if !cfg.mode.requestHeaders && !cfg.mode.responseHeaders && cfg.mode.requestBody == procfilterv3.ProcessingMode_NONE &&
		cfg.mode.responseBody == procfilterv3.ProcessingMode_NONE {
		return true
	}
	p, fail := st.openProc(cfg)
	if fail != nil {
		return st.procFailed(fail)
	}
	st.proc = p
	if p.mode.requestHeaders {
		noBody := st.r.ContentLength == 0 && len(st.r.TransferEncoding) == 0
		out := p.exchange(st, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: requestHeaderMap(st), EndOfStream: noBody},
		}}, "request_headers")
		switch {
		case out.fail != nil:
			return st.procFailed(out.fail)
		case out.immediate != nil:
			st.immediate(out.immediate)
			return false
		}
		common := out.resp.GetRequestHeaders().GetResponse()
		st.applyRequestMutation(common.GetHeaderMutation())
		if mo := out.resp.GetModeOverride(); mo != nil && cfg.allowModeOverride {
			p.mode = overrideMode(p.mode, mo)
		}
	}
	if p.mode.requestBody == procfilterv3.ProcessingMode_BUFFERED && st.proc != nil {
		return st.bufferedRequestBody(p)
	}
	return true
}

func overrideMode(m processingMode, mo *procfilterv3.ProcessingMode) processingMode {
	m.responseHeaders = mo.GetResponseHeaderMode() != procfilterv3.ProcessingMode_SKIP
	m.requestBody = mo.GetRequestBodyMode()
	m.responseBody = mo.GetResponseBodyMode()
	m.requestTrailers = mo.GetRequestTrailerMode() == procfilterv3.ProcessingMode_SEND
	m.responseTrailers = mo.GetResponseTrailerMode() == procfilterv3.ProcessingMode_SEND
	return m
}

func (st *stream) bufferedRequestBody(p *procStream) bool {
	body, err := io.ReadAll(io.LimitReader(st.r.Body, bufferLimit+1))
	if err != nil {
		st.localReply(http.StatusBadRequest, "", "downstream_body_read_error", "", nil)
		return false
	}
	if len(body) > bufferLimit {
		st.localReply(http.StatusRequestEntityTooLarge, "", "request_payload_too_large", "", nil)
		return false
	}
	out := p.exchange(st, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true},
	}}, "request_body")
	switch {
	case out.fail != nil:
		if !st.procFailed(out.fail) {
			return false
		}
	case out.immediate != nil:
		st.immediate(out.immediate)
		return false
	default:
		common := out.resp.GetRequestBody().GetResponse()
		st.applyRequestMutation(common.GetHeaderMutation())
		if bm := common.GetBodyMutation(); bm != nil {
			body = mutateBody(body, bm)
		}
	}
	st.body = strings.NewReader(string(body))
	st.bodyLen = int64(len(body))
	return true
}

// bufferLimit is the connection's buffer limit (Envoy's default
// per_connection_buffer_limit_bytes, 1 MiB).
const bufferLimit = 1 << 20

func mutateBody(body []byte, bm *extprocv3.BodyMutation) []byte {
	switch m := bm.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return m.Body
	case *extprocv3.BodyMutation_ClearBody:
		if m.ClearBody {
			return nil
		}
	}
	return body
}

// requestHeaderMap is the request headers as ext_proc sends them: lower-case
// keys, pseudo-headers first, each value as raw_value.
func requestHeaderMap(st *stream) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	add := func(k, v string) {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	add(":authority", st.r.Host)
	add(":path", st.path)
	add(":method", st.r.Method)
	add(":scheme", "http")
	addHeaders(st.r.Header, add)
	return m
}

func responseHeaderMap(code int, h http.Header) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	add := func(k, v string) {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	add(":status", strconv.Itoa(code))
	addHeaders(h, add)
	return m
}

func addHeaders(h http.Header, add func(k, v string)) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			add(strings.ToLower(k), v)
		}
	}
}

// refusedHeader reports headers a processor may not set without mutation
// rules (Envoy's HeaderMutationRules defaults).
func refusedHeader(k string) bool {
	return k == "host" || k == ":authority" || k == ":scheme" || k == ":method" || strings.HasPrefix(k, "x-envoy-")
}

func (st *stream) applyRequestMutation(m *extprocv3.HeaderMutation) {
	if m == nil {
		return
	}
	for _, o := range m.GetSetHeaders() {
		k := strings.ToLower(o.GetHeader().GetKey())
		if refusedHeader(k) {
			continue
		}
		if k == ":path" {
			st.path = headerValue(o.GetHeader())
			continue
		}
		if strings.HasPrefix(k, ":") {
			continue
		}
		applyOption(st.r.Header, o, false)
	}
	for _, k := range m.GetRemoveHeaders() {
		k = strings.ToLower(k)
		if strings.HasPrefix(k, ":") || k == "host" || refusedHeader(k) {
			continue
		}
		st.r.Header.Del(k)
	}
}

// applyHeaderMutation mutates response headers; :status may be set.
func applyHeaderMutation(h http.Header, m *extprocv3.HeaderMutation, _ bool) (status int) {
	for _, o := range m.GetSetHeaders() {
		k := strings.ToLower(o.GetHeader().GetKey())
		if k == ":status" {
			status, _ = strconv.Atoi(headerValue(o.GetHeader()))
			continue
		}
		if refusedHeader(k) || strings.HasPrefix(k, ":") {
			continue
		}
		applyOption(h, o, false)
	}
	for _, k := range m.GetRemoveHeaders() {
		k = strings.ToLower(k)
		if strings.HasPrefix(k, ":") || refusedHeader(k) {
			continue
		}
		h.Del(k)
	}
	return status
}
