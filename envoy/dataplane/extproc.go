package dataplane

//lint:file-ignore SA1019 Envoy still reads the deprecated append and text_format fields; so must its stand-in.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// procStream is one request's ext_proc stream. Envoy opens it when the first
// message is due and sends exactly one message per phase (one per chunk when
// streaming); every message gets exactly one reply of the matching kind.
type procStream struct {
	// protocolConfigSent is set once the first message carried protocol_config.
	protocolConfigSent bool
	st                 *stream
	cfg                *extProcConfig
	mode               processingMode
	client             extprocv3.ExternalProcessor_ProcessClient
	ctx                context.Context
	cancel             context.CancelFunc
	replies            chan procReply
	release            func()
	// ended is closed when the stream's receive side ends; endErr is why.
	ended  chan struct{}
	endErr error
	// stop is closed by close: nobody awaits replies any more.
	stop     chan struct{}
	stopOnce sync.Once
	// detached: the processor went away (closed its stream, or failed with
	// failure_mode_allow) while streaming; the rest passes unprocessed.
	detached atomic.Bool

	mu      sync.Mutex
	pending []pendingMessage // sent, awaiting their replies, in order
	// deadline is the message timer: restarted at every send, stopped
	// (zero) at every reply, even with other messages outstanding, as
	// Envoy's processor state does. rearm wakes a waiter when it moves.
	deadline   time.Time
	overridden bool
	rearm      chan struct{}
	// abandoned counts messages whose replies are still due after the idle
	// timeout made the stream stop waiting for them; those replies are
	// dropped when they come.
	abandoned int
	// requestDone/responseDone stop further body messages in a
	// direction (CONTINUE_AND_REPLACE, or the direction is finished).
	requestDone, responseDone bool
}

type pendingMessage struct {
	kind string
}

type procReply struct {
	resp *extprocv3.ProcessingResponse
	err  error
}

// procFailure is why a message got no usable reply.
type procFailure struct {
	status  int
	details string
	// closed: the processor ended the stream with OK. Envoy then carries on
	// without it, whatever failure_mode_allow says.
	closed bool
	// idle: the stream idle timeout fired; the reply is the connection
	// manager's, not the filter's.
	idle bool
	// immediate: the processor answered a streamed chunk with an
	// ImmediateResponse.
	immediate *extprocv3.ImmediateResponse
}

// procOutcome is the reply to one message.
type procOutcome struct {
	resp      *extprocv3.ProcessingResponse
	immediate *extprocv3.ImmediateResponse
	fail      *procFailure
}

// openProc opens the stream on the filter's cluster; each open stream holds
// one request of the cluster's circuit breaker until it ends.
func (st *stream) openProc(cfg *extProcConfig) (*procStream, *procFailure) {
	up := st.cfg.upstreams[cfg.cluster]
	if up == nil || up.grpc == nil {
		return nil, &procFailure{status: cfg.statusOnError, details: "ext_proc_error_gRPC_error_14"}
	}
	if err := up.acquire(); err != nil {
		return nil, &procFailure{status: cfg.statusOnError, details: localGRPCDetails(codes.Unavailable, "overflow", "overflow")}
	}
	ctx, cancel := context.WithCancel(up.streams)
	client, err := extprocv3.NewExternalProcessorClient(up.grpc).Process(ctx)
	if err != nil {
		cancel()
		up.release()
		return nil, &procFailure{status: cfg.statusOnError, details: grpcDetails(err)}
	}
	var once sync.Once
	p := &procStream{st: st, cfg: cfg, mode: cfg.mode, client: client, ctx: ctx, cancel: cancel,
		replies: make(chan procReply, 16), release: func() { once.Do(up.release) }, rearm: make(chan struct{}, 1),
		ended: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		for {
			resp, err := client.Recv()
			if err != nil {
				p.endErr = err
				close(p.ended)
			}
			// Not ctx: when the stream is reset (its cluster replaced) the
			// error must still reach await.
			select {
			case p.replies <- procReply{resp, err}:
			case <-p.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return p, nil
}

// grpcDetails is Envoy's details for a side stream that failed with err:
// ext_proc_error_gRPC_error_<code>{<message>}, spaces made underscores. The
// message is the server's grpc-message and {via_upstream}, or via_upstream
// alone when the server gave none; when Envoy could not reach the server it
// is the router's reply and {details} instead, as Envoy's gRPC client passes
// them on.
func grpcDetails(err error) string {
	s := status.Convert(err)
	if s.Code() == codes.Unavailable && strings.HasPrefix(s.Message(), "connection error") {
		details := "remote_connection_failure"
		if strings.Contains(s.Message(), "connection refused") {
			details += "|delayed_connect_error:_Connection_refused"
		}
		return localGRPCDetails(codes.Unavailable, "remote connection failure", details)
	}
	msg := "via_upstream"
	if s.Message() != "" {
		msg = s.Message() + "{via_upstream}"
	}
	return spacesToUnderscores(fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", s.Code(), msg))
}

// localGRPCDetails is grpcDetails for a stream Envoy's router failed itself
// (reset reason and details as upstreamFailure gives them).
func localGRPCDetails(c codes.Code, reason, details string) string {
	return spacesToUnderscores(fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s{upstream_reset_before_response_started{%s}}}", c, resetBody(reason), details))
}

// spacesToUnderscores is StringUtil::replaceAllEmptySpace, which ext_proc
// runs over every details string it sets.
func spacesToUnderscores(s string) string { return strings.ReplaceAll(s, " ", "_") }

// close half-closes and then cancels the stream, as Envoy does after the
// last expected reply, and gives back its circuit-breaker slot.
func (p *procStream) close() {
	_ = p.client.CloseSend()
	p.cancel()
	p.stopOnce.Do(func() { close(p.stop) })
	p.release()
}

// send sends one message; its reply is awaited later, in order.
func (p *procStream) send(req *extprocv3.ProcessingRequest, want string) *procFailure {
	req.MetadataContext = p.st.forwardedMetadata(p.cfg)
	p.mu.Lock()
	if !p.protocolConfigSent {
		// The first message says how bodies will come (ext_proc.cc
		// encodeProtocolConfig: the body modes in effect).
		p.protocolConfigSent = true
		req.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  p.mode.requestBody,
			ResponseBodyMode: p.mode.responseBody,
		}
	}
	p.pending = append(p.pending, pendingMessage{kind: want})
	p.setTimerLocked(time.Now().Add(p.cfg.messageTimeout))
	p.mu.Unlock()
	if err := p.client.Send(req); err != nil {
		// The reason is on the receive side (a status, or io.EOF when the
		// processor closed the stream); the replies stay for await.
		select {
		case <-p.ended:
			return p.streamEnded(p.endErr)
		case <-time.After(time.Second):
			return p.streamEnded(err)
		}
	}
	return nil
}

// exchange sends one message and waits for its reply.
func (p *procStream) exchange(req *extprocv3.ProcessingRequest, want string) procOutcome {
	if f := p.send(req, want); f != nil {
		return procOutcome{fail: f}
	}
	return p.await()
}

// setTimerLocked moves the message timer (zero stops it) and allows one
// override again.
func (p *procStream) setTimerLocked(d time.Time) {
	p.deadline = d
	p.overridden = false
	select {
	case p.rearm <- struct{}{}:
	default:
	}
}

// await waits for the reply to the oldest message awaiting one. The message
// timer runs from the last send and stops at each reply, so with several
// chunks outstanding the later ones wait without it (the stream idle
// timeout still applies). A reply that carries only override_message_timeout
// restarts the timer once per send or reply, within [1ms,
// max_message_timeout]; otherwise it is ignored, as Envoy ignores it.
func (p *procStream) await() procOutcome {
	p.mu.Lock()
	if len(p.pending) == 0 {
		p.mu.Unlock()
		return procOutcome{fail: &procFailure{status: p.cfg.statusOnError, details: "spurious_message"}}
	}
	msg := p.pending[0]
	p.pending = p.pending[1:]
	p.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		p.mu.Lock()
		deadline := p.deadline
		p.mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
		var expired <-chan time.Time
		if !deadline.IsZero() {
			timer = time.NewTimer(time.Until(deadline))
			expired = timer.C
		}
		done := p.st.ctx.Done()
		if p.st.idleReplying.Load() {
			done = nil // the idle reply's own messages: only their timer bounds them
		}
		select {
		case <-done:
			// The reply to msg, if it comes, is for a message given up.
			p.mu.Lock()
			p.abandoned++
			p.mu.Unlock()
			return procOutcome{fail: &procFailure{idle: true}}
		case <-expired:
			// Always 504, whatever status_on_error says.
			return procOutcome{fail: &procFailure{status: http.StatusGatewayTimeout, details: "ext_proc_error_per-message_timeout_exceeded"}}
		case <-p.rearm:
			continue
		case r := <-p.replies:
			if r.err != nil {
				return procOutcome{fail: p.streamEnded(r.err)}
			}
			resp := r.resp
			p.mu.Lock()
			skip := p.abandoned > 0
			if skip && resp.GetResponse() != nil {
				p.abandoned--
			}
			p.mu.Unlock()
			if skip {
				continue // a late reply to a message the stream gave up on
			}
			if d := resp.GetOverrideMessageTimeout(); d != nil && resp.GetResponse() == nil {
				t := d.AsDuration()
				p.mu.Lock()
				if p.cfg.maxMessageTimeout > 0 && !p.overridden && t >= time.Millisecond && t <= p.cfg.maxMessageTimeout {
					p.deadline, p.overridden = time.Now().Add(t), true
				}
				p.mu.Unlock()
				continue
			}
			p.mu.Lock()
			p.setTimerLocked(time.Time{})
			p.mu.Unlock()
			p.st.receiveMetadata(p.cfg, resp.GetDynamicMetadata())
			if ir := resp.GetImmediateResponse(); ir != nil {
				return procOutcome{immediate: ir}
			}
			if kindOf(resp) != msg.kind {
				return procOutcome{fail: &procFailure{status: p.cfg.statusOnError, details: "spurious_message"}}
			}
			return procOutcome{resp: resp}
		}
	}
}

func (p *procStream) streamEnded(err error) *procFailure {
	if errors.Is(err, io.EOF) {
		return &procFailure{closed: true}
	}
	if errors.Is(context.Cause(p.ctx), errClusterReplaced) {
		// Envoy's reset of the async stream: INTERNAL, no message.
		err = status.Error(codes.Internal, "")
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
// Envoy sends it on every message, empty when there is nothing to forward.
func (st *stream) forwardedMetadata(cfg *extProcConfig) *corev3.Metadata {
	md := &corev3.Metadata{}
	st.mdMu.Lock()
	defer st.mdMu.Unlock()
	for _, ns := range cfg.forwardNamespaces {
		if s, ok := st.metadata[ns]; ok {
			if md.FilterMetadata == nil {
				md.FilterMetadata = map[string]*structpb.Struct{}
			}
			md.FilterMetadata[ns] = s
		}
	}
	return md
}

// receiveMetadata writes a reply's dynamic_metadata, only for the receiving
// namespaces (metadata_options.receiving_namespaces).
func (st *stream) receiveMetadata(cfg *extProcConfig, md *structpb.Struct) {
	st.mdMu.Lock()
	defer st.mdMu.Unlock()
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

// endProc closes the stream and detaches it from the request; ext_proc
// takes no further part in it.
func (st *stream) endProc() *procStream {
	p := st.proc
	st.proc = nil
	st.procOver = true
	if p != nil {
		p.close()
	}
	return p
}

// responseProc opens ext_proc's stream for the response when ext_proc
// should process it and has no stream: Envoy's encoder side opens one when
// its first message is due, so a local reply sent before ext_proc ran (an
// ext_authz denial) still reaches the processor. It returns false when it
// answered the request itself (the stream could not be opened).
func (st *stream) responseProc() bool {
	cfg := st.hcm.extProc
	if st.proc != nil || st.procOver || cfg == nil || (st.route != nil && st.route.procDisabled) ||
		(!cfg.mode.responseHeaders && cfg.mode.responseBody == procfilterv3.ProcessingMode_NONE) {
		return true
	}
	p, fail := st.openProc(cfg)
	if fail != nil {
		return st.procFailed(fail)
	}
	st.proc = p
	return true
}

// procFailed applies a failure. The processor closing its stream, or
// failure_mode_allow, lets the request carry on without ext_proc; anything
// else answers with the failure's status. It returns true to carry on.
func (st *stream) procFailed(f *procFailure) bool {
	if f.immediate != nil {
		st.immediate(f.immediate)
		return false
	}
	if f.idle {
		// The stream stays open: the idle reply goes through it.
		st.idleReply()
		return false
	}
	p := st.endProc()
	allow := st.hcm.extProc != nil && st.hcm.extProc.failureModeAllow
	if p != nil {
		allow = p.cfg.failureModeAllow
	}
	if f.closed || allow {
		return true
	}
	st.localReply(f.status, "", f.details, "", nil)
	return false
}

// immediate answers with a processor's ImmediateResponse; the stream is
// done and later messages are not sent.
func (st *stream) immediate(ir *extprocv3.ImmediateResponse) {
	st.endProc()
	code := int(ir.GetStatus().GetCode())
	if code < 200 {
		code = 200
	}
	if code > 999 {
		code = http.StatusInternalServerError // not writable as an HTTP status (docs/dataplane.md)
	}
	// Envoy replaces spaces in details with underscores, and leaves them
	// empty when the processor gave none.
	details := spacesToUnderscores(ir.GetDetails())
	st.localReply(code, string(ir.GetBody()), details, "", func(h http.Header) {
		if m := ir.GetHeaders(); m != nil {
			_, _ = applyHeaderMutation(h, m, true) // failures are only logged by Envoy
		}
	})
}

// handled sorts a reply: it returns the common response to act on, or nil
// when the request was answered (or carried on without ext_proc: then ok is
// true and common is nil).
func (st *stream) handled(out procOutcome, get func(*extprocv3.ProcessingResponse) *extprocv3.CommonResponse) (common *extprocv3.CommonResponse, ok bool) {
	switch {
	case out.fail != nil:
		return nil, st.procFailed(out.fail)
	case out.immediate != nil:
		st.immediate(out.immediate)
		return nil, false
	}
	c := get(out.resp)
	if c == nil {
		c = &extprocv3.CommonResponse{}
	}
	return c, true
}

func needsStream(m processingMode) bool {
	return m.requestHeaders || m.responseHeaders || m.requestBody != procfilterv3.ProcessingMode_NONE ||
		m.responseBody != procfilterv3.ProcessingMode_NONE
}

// extProcRequest runs the decoding side of ext_proc: it opens the stream,
// sends the request headers and sets the request body up for its mode. It
// returns false when it answered the request itself.
func (st *stream) extProcRequest(cfg *extProcConfig) bool {
	if !needsStream(cfg.mode) {
		return true
	}
	p, fail := st.openProc(cfg)
	if fail != nil {
		return st.procFailed(fail)
	}
	st.proc = p
	// Where the body may change without the headers knowing, content-length
	// goes; the processor still sees it in the headers message.
	dropLength := !p.keepsLength(false)
	if p.mode.requestHeaders {
		out := p.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: requestHeaderMap(st), EndOfStream: !st.hasBody() && !st.connect},
		}}, "request_headers")
		common, ok := st.handled(out, func(r *extprocv3.ProcessingResponse) *extprocv3.CommonResponse {
			return r.GetRequestHeaders().GetResponse()
		})
		if common == nil {
			return ok
		}
		if dropLength {
			st.r.Header.Del("content-length")
		}
		if err := st.applyRequestMutation(common.GetHeaderMutation(), p.keepsLength(false)); err != nil {
			return st.procFailed(&procFailure{status: p.cfg.statusOnError, details: mutationDetails(err)})
		}
		if mo := out.resp.GetModeOverride(); mo != nil && cfg.allowModeOverride {
			p.mode = overrideMode(p.mode, mo)
		}
		if common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE {
			// No more body messages this way; the body is
			// replaced only when the reply carries one.
			p.requestDone = true
			if bm := common.GetBodyMutation(); bm != nil {
				st.setBody(mutateBody(nil, bm))
				st.r.Header.Del("content-length")
				st.bodyLen = -1
				if st.body == http.NoBody {
					st.bodyLen = 0
				}
			}
		}
	}
	if !p.mode.requestHeaders && dropLength {
		st.r.Header.Del("content-length")
	}
	if st.proc == nil || p.requestDone || !st.hasBody() {
		return true
	}
	switch p.mode.requestBody {
	case procfilterv3.ProcessingMode_BUFFERED:
		return st.bufferedRequestBody(p, false)
	case procfilterv3.ProcessingMode_BUFFERED_PARTIAL:
		return st.bufferedRequestBody(p, true)
	case procfilterv3.ProcessingMode_STREAMED:
		st.streamRequestBody(p)
	}
	return true
}

// overrideMode applies a mode_override to both directions: a response
// header mode left DEFAULT keeps the configured value; body modes are taken
// literally, unset meaning NONE.
func overrideMode(m processingMode, mo *procfilterv3.ProcessingMode) processingMode {
	pick := func(cur bool, v procfilterv3.ProcessingMode_HeaderSendMode) bool {
		switch v {
		case procfilterv3.ProcessingMode_SEND:
			return true
		case procfilterv3.ProcessingMode_SKIP:
			return false
		}
		return cur
	}
	m.responseHeaders = pick(m.responseHeaders, mo.GetResponseHeaderMode())
	m.requestBody = mo.GetRequestBodyMode()
	m.responseBody = mo.GetResponseBodyMode()
	return m
}

// keepsLength reports whether content-length stays in a direction: only
// for BUFFERED bodies sent with their headers (processor_state.h
// shouldRemoveContentLength); elsewhere a processor's content-length is
// skipped.
func (p *procStream) keepsLength(response bool) bool {
	if response {
		return p.mode.responseBody == procfilterv3.ProcessingMode_NONE ||
			(p.mode.responseBody == procfilterv3.ProcessingMode_BUFFERED && p.mode.responseHeaders)
	}
	return p.mode.requestBody == procfilterv3.ProcessingMode_NONE ||
		(p.mode.requestBody == procfilterv3.ProcessingMode_BUFFERED && p.mode.requestHeaders)
}

func mutationDetails(err error) string {
	return "ext_proc_error_" + strings.ReplaceAll(err.Error(), " ", "_")
}

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
	if !st.connect {
		add(":path", st.path)
	}
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

// refusedHeader reports headers a processor may not change without
// mutation_rules (Envoy's HeaderMutationRules defaults): the mutation is
// ignored.
func refusedHeader(k string) bool {
	return k == "host" || k == ":authority" || k == ":scheme" || k == ":method" || strings.HasPrefix(k, "x-envoy-")
}

// procHeader reads one header of a processor's mutation as Envoy does with
// its default runtime (send_header_raw_value): raw_value only; value alone
// is an empty header, and both set is an error.
func procHeader(o *corev3.HeaderValueOption) (k, v string, err error) {
	h := o.GetHeader()
	if h.GetValue() != "" && len(h.GetRawValue()) > 0 {
		return "", "", errBothValues
	}
	return strings.ToLower(h.GetKey()), string(h.GetRawValue()), nil
}

var errBothValues = errors.New("header mutation sets both value and raw_value")

// setProcHeader applies one set_headers entry: append true adds a value,
// anything else overwrites (ext_proc reads the append BoolValue only, not
// append_action).
func setProcHeader(h http.Header, k, v string, o *corev3.HeaderValueOption) {
	if o.GetAppend().GetValue() {
		h.Add(k, v)
		return
	}
	h.Set(k, v)
}

// applyRequestMutation applies a processor's mutation to the request. A
// refused mutation (routing headers, x-envoy-*, appending to or removing a
// pseudo-header, content-length where the body may change) is ignored, as
// Envoy ignores it without mutation_rules; an invalid one is an error.
func (st *stream) applyRequestMutation(m *extprocv3.HeaderMutation, keepLength bool) error {
	if m == nil {
		return nil
	}
	for _, o := range m.GetSetHeaders() {
		k, v, err := procHeader(o)
		if err != nil {
			return err
		}
		switch {
		case refusedHeader(k), k == "content-length" && !keepLength:
		case k == ":path":
			if !o.GetAppend().GetValue() {
				st.path = v
			}
		case strings.HasPrefix(k, ":"):
		default:
			setProcHeader(st.r.Header, k, v, o)
		}
	}
	for _, k := range m.GetRemoveHeaders() {
		k = strings.ToLower(k)
		if strings.HasPrefix(k, ":") || refusedHeader(k) {
			continue
		}
		st.r.Header.Del(k)
	}
	return nil
}

// applyHeaderMutation mutates response headers; it returns a
// new :status when the mutation sets a valid one (200 or more).
func applyHeaderMutation(h http.Header, m *extprocv3.HeaderMutation, keepLength bool) (status int, err error) {
	for _, o := range m.GetSetHeaders() {
		k, v, err := procHeader(o)
		if err != nil {
			return 0, err
		}
		switch {
		case k == ":status":
			if n, err := strconv.Atoi(v); err == nil && n >= 200 && n <= 999 && !o.GetAppend().GetValue() {
				status = n
			}
		case refusedHeader(k), strings.HasPrefix(k, ":"), k == "content-length" && !keepLength:
		default:
			setProcHeader(h, k, v, o)
		}
	}
	for _, k := range m.GetRemoveHeaders() {
		k = strings.ToLower(k)
		if strings.HasPrefix(k, ":") || refusedHeader(k) {
			continue
		}
		h.Del(k)
	}
	return status, nil
}
