package extproc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/custos-dev/custos/filters/approval"
	"github.com/custos-dev/custos/filters/mask"
	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/names"
)

// recordTimeout bounds one Record call in Process: half of Envoy's message
// timeout, so a slow record fails the exchange instead of racing Envoy's 504.
const recordTimeout = names.MessageTimeout / 2

// Process handles one request's ext_proc stream: a receive loop that hands
// each message to the method of its phase. A phase may send interim
// messages before its reply (a hold first sends override_message_timeout).
// Process returns nil only when Envoy ended the stream (io.EOF,
// cancellation); every abnormal end is a gRPC error so that Envoy fails the
// request closed. The exchange is recorded exactly once, by end, at
// whichever message is its last.
func (s *Service) Process(stream extprocv3.ExternalProcessor_ProcessServer) (err error) {
	ex := &exchange{p: s.pipeline.Load(), log: s.log, stream: stream, ctx: stream.Context(), started: time.Now(), pending: &s.pending, metrics: s.metrics.Load(),
		// Custos' xDS sends no response body unless a phase asks for it;
		// Envoy's protocol_config, on the first message, says for sure.
		respBodyMode: procfilterv3.ProcessingMode_NONE}
	defer func() {
		if r := recover(); r != nil {
			ex.p.logPanic(ex.v.RequestID, r)
			err = status.Error(codes.Internal, "ext_proc: internal error")
		}
		if err != nil {
			_ = ex.end(record.Aborted, status.Convert(err).Message())
		}
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				return ex.streamEnded()
			}
			return err
		}
		resp, err := ex.handle(req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// exchange is the per-stream state of one request.
type exchange struct {
	p       *Pipeline
	metrics *Metrics
	log     *slog.Logger
	stream  extprocv3.ExternalProcessor_ProcessServer
	ctx     context.Context
	started time.Time

	v     Verdict
	haveV bool
	// respBodyMode is how Envoy sends the response body.
	respBodyMode procfilterv3.ProcessingMode_BodySendMode
	// sawResponse is set once the response headers were seen.
	sawResponse bool
	// replyCode is the error code of the reply Custos sent instead of the
	// upstream's ("" for none).
	replyCode string
	status    int
	masker    mask.Stream
	// bufferedMask is set when the masked body comes whole (small, of
	// known length): its headers then carry x-custos-masked.
	bufferedMask bool
	done         bool
	// localReply is set when the stream carries a reply Envoy made itself.
	localReply bool
	// pending are the decisions Check is making durable; evidence is this
	// request's, taken at its request headers (before_response), waited for
	// before the response goes back.
	pending  *pendingRecords
	evidence func(context.Context) (string, error)
	// bodyHash hashes the body the agent receives, when it passes Custos.
	bodyHash hash.Hash
}

// awaitEvidence waits until the decision Check started recording is
// durable and returns its receipt ("" when Check waited itself). No
// evidence, no response: an error fails the exchange.
func (ex *exchange) awaitEvidence() (string, error) {
	if ex.evidence == nil {
		return "", nil
	}
	wait := ex.evidence
	ex.evidence = nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ex.ctx), recordTimeout)
	defer cancel()
	receipt, err := wait(ctx)
	if err != nil {
		ex.log.Error("the decision was not recorded", "request_id", ex.v.RequestID, "error", err)
		return "", status.Error(codes.Unavailable, "ext_proc: the decision could not be recorded")
	}
	return receipt, nil
}

// passLocalReply answers each message of a local reply's stream unchanged.
func passLocalReply(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
			ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}}, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
			ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "ext_proc: a local reply's stream carries %T", req.GetRequest())
}

func (ex *exchange) handle(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if pc := req.GetProtocolConfig(); pc != nil {
		ex.respBodyMode = pc.GetResponseBodyMode()
	}
	if !ex.haveV && !ex.localReply {
		switch req.GetRequest().(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			// A stream that opens with response headers carries a reply
			// Envoy made itself before ext_proc saw the request: a denial
			// from Check (already recorded), a 400 for a refused path. No
			// upstream was reached; the reply passes unchanged.
			ex.localReply = true
		default:
			return nil, status.Error(codes.FailedPrecondition, "ext_proc: message before request headers")
		}
	}
	if ex.localReply {
		return passLocalReply(req)
	}
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return ex.requestHeaders(req)
	case *extprocv3.ProcessingRequest_RequestBody:
		return ex.requestBody(r.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return ex.requestTrailers()
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return ex.responseHeaders(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return ex.responseBody(r.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return ex.responseTrailers()
	default:
		return nil, status.Errorf(codes.InvalidArgument, "ext_proc: unexpected message %T", r)
	}
}

// send sends an interim message ahead of a phase's reply.
func (ex *exchange) send(m *extprocv3.ProcessingResponse) error { return ex.stream.Send(m) }

func (ex *exchange) requestHeaders(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if ex.haveV {
		return nil, status.Error(codes.InvalidArgument, "ext_proc: request headers sent twice")
	}
	v, err := verdictFrom(req.GetMetadataContext().GetFilterMetadata()[names.VerdictNamespace])
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, "ext_proc: "+err.Error())
	}
	ex.v, ex.haveV = v, true
	if v.EvidencePending {
		if ex.evidence = ex.pending.take(v.RequestID); ex.evidence == nil {
			// Check ran on another replica, or this request id was seen
			// already: the decision's durability cannot be vouched for.
			return nil, status.Error(codes.FailedPrecondition, "ext_proc: the decision's record is not held here (before_response needs Check and ext_proc on the same custos)")
		}
	}
	if v.Hold != nil {
		return ex.hold(*v.Hold)
	}
	return requestHeadersReply(), nil
}

func requestHeadersReply() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}}
}

// hold keeps the request until its approval is resolved: first Envoy's
// message timer is stretched past the hold (override_message_timeout, at most
// the max_message_timeout Custos' xDS sets), then Custos waits, so its own
// answer at the end of the hold always comes before Envoy's 504.
func (ex *exchange) hold(h Hold) (*extprocv3.ProcessingResponse, error) {
	override := min(h.Timeout+names.HoldMargin, ex.p.cfg.Approvals.Timeout+names.HoldMargin)
	if err := ex.send(&extprocv3.ProcessingResponse{OverrideMessageTimeout: durationpb.New(override)}); err != nil {
		return nil, err
	}
	// The approval service, when it records its own events, has recorded
	// the request already; otherwise the hold is recorded here.
	rec, ok := ex.p.stages.Grants.(interface{ RecordsEvents() bool })
	recordHere := !ok || !rec.RecordsEvents()
	if recordHere {
		if err := ex.record(record.Event{Kind: record.Held, Detail: "approval " + h.ApprovalID}); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ex.ctx, h.Timeout)
	state, err := ex.p.stages.Grants.Await(ctx, h.ApprovalID)
	timedOut := ctx.Err() != nil && ex.ctx.Err() == nil
	cancel()
	if err != nil && !timedOut {
		return nil, status.Error(codes.Unavailable, "ext_proc: the approval could not be awaited")
	}
	if recordHere {
		if err := ex.record(record.Event{Kind: record.Approved, Detail: "approval " + h.ApprovalID + " " + state}); err != nil {
			return nil, err
		}
	}
	switch {
	case !timedOut && state == approval.StateApproved:
		return requestHeadersReply(), nil
	case !timedOut && state == approval.StateDenied:
		extra := map[string]any{"approval_id": h.ApprovalID}
		if d, ok := ex.p.stages.Grants.(interface {
			Denial(ctx context.Context, id string) (reason, by string)
		}); ok {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ex.ctx), recordTimeout)
			extra["reason"], extra["denied_by"] = d.Denial(ctx, h.ApprovalID)
			cancel()
		}
		return ex.immediate(Reply{Status: 403, Code: CodeApprovalDenied, Message: "an approver denied this request", Extra: extra})
	default:
		return ex.immediate(Reply{Status: 403, Code: CodeApprovalRequired, Message: "no approval within the hold; retry with " + names.ApprovalIDHeader,
			Extra: ex.p.approvalLinks(h.ApprovalID, map[string]any{"approval_id": h.ApprovalID, "status": approval.StatePending})})
	}
}

// immediate answers the agent with Custos' own reply; the stream ends there.
func (ex *exchange) immediate(r Reply) (*extprocv3.ProcessingResponse, error) {
	r.RequestID = ex.v.RequestID
	ex.status = r.Status
	ex.replyCode = r.Code
	if err := ex.end(record.Completed, r.Code); err != nil {
		return nil, err
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{
		ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
				rawHeader("content-type", "application/json"),
				rawHeader(names.RequestIDHeader, r.RequestID),
			}},
			Body:    r.Body(),
			Details: "custos_" + r.Code,
		}},
		// Marks the reply as Custos' own, so the listener's local reply
		// mappers keep its JSON (a 502 would otherwise be rewritten).
		DynamicMetadata: deniedMarker()}, nil
}

func (ex *exchange) requestBody(*extprocv3.HttpBody) (*extprocv3.ProcessingResponse, error) {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
		RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}, nil
}

func (ex *exchange) requestTrailers() (*extprocv3.ProcessingResponse, error) {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
		RequestTrailers: &extprocv3.TrailersResponse{}}}, nil
}

func (ex *exchange) responseHeaders(h *extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
	ex.sawResponse = true
	for _, hv := range h.GetHeaders().GetHeaders() {
		if hv.GetKey() == ":status" {
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			ex.status, _ = strconv.Atoi(v)
		}
	}
	var override *procfilterv3.ProcessingMode
	// An upgrade (101) carries no HTTP body: what follows is the tunnel's,
	// never processed or masked (docs/contract.md says so).
	upgraded := ex.status == http.StatusSwitchingProtocols
	if upgraded {
		ex.respBodyMode = procfilterv3.ProcessingMode_NONE
	}
	if profile := mask.NewProfile(ex.v.MaskProfile...); !profile.Empty() && !h.GetEndOfStream() && !upgraded {
		m, err := ex.p.stages.Mask.Open(profile, responseBody(h))
		if err != nil {
			// A body the engine cannot read (strict), or no engine: the
			// response is withheld, never passed unmasked.
			ex.log.Warn("response withheld: it cannot be masked", "request_id", ex.v.RequestID, "profile", profile.String(), "error", err)
			if _, err := ex.awaitEvidence(); err != nil {
				return nil, err
			}
			return ex.immediate(Reply{Status: 502, Code: CodeResponseWithheld,
				Message: "the upstream's response could not be masked (profile " + profile.String() + "); it was withheld"})
		}
		ex.masker = m
		ex.bodyHash = sha256.New()
		if ex.respBodyMode == procfilterv3.ProcessingMode_NONE {
			// The route sends no response body by default: ask for this one.
			// A small body of known length is buffered, so that its headers
			// can say what was masked (x-custos-masked) and its right length;
			// any other streams through the engine chunk by chunk, in bounded
			// memory (Envoy drops content-length for a streamed body).
			mode := procfilterv3.ProcessingMode_STREAMED
			if n, ok := contentLength(h); ok && n <= maxBufferedMasking {
				mode, ex.bufferedMask = procfilterv3.ProcessingMode_BUFFERED, true
			}
			override = &procfilterv3.ProcessingMode{ResponseHeaderMode: procfilterv3.ProcessingMode_SEND,
				ResponseBodyMode: mode, ResponseTrailerMode: procfilterv3.ProcessingMode_SKIP}
			ex.respBodyMode = mode
		}
	}
	bodyFollows := !h.GetEndOfStream() && ex.respBodyMode != procfilterv3.ProcessingMode_NONE
	// No evidence, no response: the decision is durable before the
	// response headers go back (before_response waits here).
	receipt, err := ex.awaitEvidence()
	if err != nil {
		return nil, err
	}
	if !bodyFollows {
		// A record that fails fails the exchange.
		if err := ex.end(record.Completed, ""); err != nil {
			return nil, err
		}
	}
	set := []*corev3.HeaderValueOption{rawHeader(names.RequestIDHeader, ex.v.RequestID)}
	if receipt != "" {
		set = append(set, rawHeader(names.EvidenceHeader, receipt))
	}
	mut := &extprocv3.HeaderMutation{SetHeaders: set}
	if ex.masker != nil && !ex.bufferedMask {
		// The masked body's length differs from the upstream's.
		mut.RemoveHeaders = []string{"content-length"}
	}
	return &extprocv3.ProcessingResponse{ModeOverride: override, Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}}}}, nil
}

func (ex *exchange) responseBody(b *extprocv3.HttpBody) (*extprocv3.ProcessingResponse, error) {
	common := &extprocv3.CommonResponse{}
	if ex.masker != nil {
		out, err := ex.masker.Mask(b.GetBody(), b.GetEndOfStream())
		if err != nil {
			// The headers are gone: the stream is reset, and the agent has
			// a broken response, never the unmasked rest.
			ex.log.Error("masking failed mid-response; the stream is reset", "request_id", ex.v.RequestID, "error", err)
			return nil, status.Error(codes.Internal, "ext_proc: masking failed")
		}
		common.BodyMutation = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: out}}
		ex.bodyHash.Write(out)
		if ex.bufferedMask && b.GetEndOfStream() {
			// The headers wait for the buffered body: they get its masked
			// length and the report (counts only, never a value).
			set := []*corev3.HeaderValueOption{rawHeader("content-length", strconv.Itoa(len(out)))}
			if r := ex.masker.Report(); len(r) > 0 {
				set = append(set, rawHeader(names.MaskedHeader, r.Header()))
			}
			common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: set}
		}
	}
	if b.GetEndOfStream() {
		if err := ex.end(record.Completed, ""); err != nil {
			return nil, err
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
		ResponseBody: &extprocv3.BodyResponse{Response: common}}}, nil
}

func (ex *exchange) responseTrailers() (*extprocv3.ProcessingResponse, error) {
	if err := ex.end(record.Completed, ""); err != nil {
		return nil, err
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
		ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
}

// streamEnded is Envoy ending the stream: a normal end. An exchange not yet
// recorded is recorded as aborted (client gone, upstream reset, a local
// reply), unless its response headers were its last message.
func (ex *exchange) streamEnded() error {
	if ex.sawResponse && ex.respBodyMode == procfilterv3.ProcessingMode_NONE {
		_ = ex.end(record.Completed, "")
		return nil
	}
	_ = ex.end(record.Aborted, "stream ended before the response was complete: Envoy answered itself (local reply), the upstream failed or the client left")
	return nil
}

// end records the exchange once; later calls do nothing. A failed record is
// returned as a gRPC error for the caller to fail the stream with.
func (ex *exchange) end(kind record.Kind, detail string) error {
	if ex.done || !ex.haveV {
		return nil
	}
	ex.done = true
	// The decision goes in the log before how the exchange ended.
	if _, err := ex.awaitEvidence(); err != nil {
		return err
	}
	e := record.Event{Kind: kind, Status: ex.status, Detail: detail, MaskProfile: joinProfile(ex.v.MaskProfile)}
	if ex.masker != nil {
		e.Masked = ex.masker.Report()
		d := ex.masker.Details()
		e.MaskedBy, e.MaskedPointers, e.MaskedPointersDropped, e.MaskUnread = d.Counts, d.Pointers, d.PointersDropped, d.Unread
		ex.masker.Close()
		if kind == record.Completed {
			e.BodySHA256 = hex.EncodeToString(ex.bodyHash.Sum(nil))
		}
	}
	outcome := "completed"
	switch {
	case ex.replyCode != "":
		outcome = ex.replyCode
	case kind == record.Aborted:
		outcome = "aborted"
	}
	ex.metrics.countEnd(ex.v.Connection, outcome, e.Masked)
	return ex.record(e)
}

// record fills e with the verdict's fields and hands it to the record stage.
func (ex *exchange) record(e record.Event) (err error) {
	e.RequestID, e.SessionID, e.Session, e.Principal = ex.v.RequestID, ex.v.SessionID, ex.v.Session, ex.v.Principal
	e.Connection, e.Method, e.Path, e.DecisionID = ex.v.Connection, ex.v.Method, ex.v.Path, ex.v.DecisionID
	e.Started, e.Finished = ex.started, time.Now()
	// The record must finish well inside Envoy's message_timeout, or Envoy
	// answers 504 while the record says the exchange completed.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ex.ctx), recordTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			ex.p.logPanic(e.RequestID, r)
			err = status.Error(codes.Unavailable, "ext_proc: the exchange could not be recorded")
		}
	}()
	if err := ex.p.stages.Record.Record(ctx, e); err != nil {
		ex.log.Error("record exchange", "request_id", e.RequestID, "kind", string(e.Kind), "error", err)
		return status.Error(codes.Unavailable, fmt.Sprintf("ext_proc: the %s could not be recorded", e.Kind))
	}
	return nil
}

func rawHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// responseBody is what the response headers say about the body: how the
// masking engine reads it.
func responseBody(h *extprocv3.HttpHeaders) mask.Body {
	var b mask.Body
	for _, hv := range h.GetHeaders().GetHeaders() {
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		switch strings.ToLower(hv.GetKey()) {
		case "content-type":
			b.ContentType = v
		case "content-encoding":
			b.ContentEncoding = v
		}
	}
	return b
}

// deniedMarker is the dynamic metadata that marks Process's own replies.
func deniedMarker() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		names.ReceivingNamespace: structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			names.DeniedKey: structpb.NewBoolValue(true),
		}}),
	}}
}

// maxBufferedMasking is the largest body masked whole (buffered, with
// x-custos-masked and its length); larger ones stream. Well below Envoy's
// default per-connection buffer limit (1 MiB).
const maxBufferedMasking = 256 << 10

// contentLength is the response's content-length, when it has one.
func contentLength(h *extprocv3.HttpHeaders) (int64, bool) {
	for _, hv := range h.GetHeaders().GetHeaders() {
		if strings.EqualFold(hv.GetKey(), "content-length") {
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil && n >= 0
		}
	}
	return 0, false
}
