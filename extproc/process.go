package extproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/custos-dev/custos/filters/record"
	"github.com/custos-dev/custos/xds"
)

// Process handles one request's ext_proc stream: a receive loop that hands
// each message to the method of its phase. It returns nil only when Envoy
// ended the stream (io.EOF, cancellation); every abnormal end is a gRPC error
// so that Envoy fails the request closed.
func (s *Service) Process(stream extprocv3.ExternalProcessor_ProcessServer) (err error) {
	ex := &exchange{svc: s, ctx: stream.Context(), started: time.Now()}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("ext_proc panic", "request_id", ex.d.RequestID, "panic", fmt.Sprint(p))
			err = status.Error(codes.Internal, "ext_proc: internal error")
		}
		if err != nil {
			_ = ex.finish(record.Aborted, status.Convert(err).Message())
		}
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
				// Envoy ended the stream: a normal end, recorded if the
				// response was never seen (client gone, upstream reset).
				_ = ex.finish(record.Aborted, "stream ended before the response: Envoy answered itself (local reply), the upstream failed or the client left")
				return nil
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

// recordTimeout bounds one Record call: half of xds.MessageTimeout.
const recordTimeout = xds.MessageTimeout / 2

// exchange is the per-stream state of one request.
type exchange struct {
	svc     *Service
	ctx     context.Context
	started time.Time
	d       decision
	haveD   bool
	status  int
	done    bool
}

func (ex *exchange) handle(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return ex.requestHeaders(req)
	case *extprocv3.ProcessingRequest_RequestBody:
		if err := ex.need(); err != nil {
			return nil, err
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{
			RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}, nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if err := ex.need(); err != nil {
			return nil, err
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{
			RequestTrailers: &extprocv3.TrailersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return ex.responseHeaders(r.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		if err := ex.need(); err != nil {
			return nil, err
		}
		if r.ResponseBody.GetEndOfStream() {
			if err := ex.finish(record.Completed, ""); err != nil {
				return nil, err
			}
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
			ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{}}}}, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		if err := ex.need(); err != nil {
			return nil, err
		}
		if err := ex.finish(record.Completed, ""); err != nil {
			return nil, err
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{
			ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	default:
		return nil, status.Errorf(codes.InvalidArgument, "ext_proc: unexpected message %T", r)
	}
}

// need fails a message that arrives before the request's decision is known.
func (ex *exchange) need() error {
	if !ex.haveD {
		return status.Error(codes.FailedPrecondition, "ext_proc: message before request headers")
	}
	return nil
}

func (ex *exchange) requestHeaders(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if ex.haveD {
		return nil, status.Error(codes.InvalidArgument, "ext_proc: request headers sent twice")
	}
	d, err := decisionFrom(req.GetMetadataContext().GetFilterMetadata()[xds.ExtAuthzFilter])
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, "ext_proc: "+err.Error())
	}
	ex.d, ex.haveD = d, true
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{
		RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}}}, nil
}

func (ex *exchange) responseHeaders(h *extprocv3.HttpHeaders) (*extprocv3.ProcessingResponse, error) {
	if err := ex.need(); err != nil {
		return nil, err
	}
	for _, hv := range h.GetHeaders().GetHeaders() {
		if hv.GetKey() == ":status" {
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			ex.status, _ = strconv.Atoi(v)
		}
	}
	// Bodies and trailers are not sent in the current processing mode, so
	// with end_of_stream or without, the response headers are the last message.
	// No evidence, no response: a record that fails fails the exchange.
	if err := ex.finish(record.Completed, ""); err != nil {
		return nil, err
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{
		ResponseHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
				Header:       &corev3.HeaderValue{Key: RequestIDHeader, RawValue: []byte(ex.d.RequestID)},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}}},
		}}}}, nil
}

// finish records the exchange once; later calls do nothing. A failed record
// is returned as a gRPC error for the caller to fail the stream with.
func (ex *exchange) finish(outcome record.Outcome, detail string) error {
	if ex.done || !ex.haveD {
		return nil
	}
	ex.done = true
	e := record.Exchange{
		RequestID:  ex.d.RequestID,
		SessionID:  ex.d.SessionID,
		Connection: ex.d.Connection,
		Method:     ex.d.Method,
		Path:       ex.d.Path,
		Status:     ex.status,
		Outcome:    outcome,
		Started:    ex.started,
		Finished:   time.Now(),
		Detail:     detail,
	}
	// The record must finish well inside Envoy's message_timeout, or Envoy
	// answers 504 while the record says the exchange completed.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ex.ctx), recordTimeout)
	defer cancel()
	if err := ex.svc.recorder.Record(ctx, e); err != nil {
		ex.svc.log.Error("record exchange", "request_id", e.RequestID, "error", err)
		return status.Error(codes.Unavailable, "ext_proc: the exchange could not be recorded")
	}
	return nil
}
