package dataplane

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// bufferLimit is the buffer limit of a stream (Envoy's default
// per_connection_buffer_limit_bytes, 1 MiB): over it, a BUFFERED body is an
// error (413 requests, 500 responses) and a BUFFERED_PARTIAL body is sent
// up to it.
const bufferLimit = 1 << 20

// chunkSize is the largest body chunk read at once when streaming.
const chunkSize = 32 << 10

var errContentLength = errors.New("content-length does not match the mutated body")

// contentLengthDetails is Envoy's response code details for that error.
const contentLengthDetails = "mismatch_between_content_length_and_the_length_of_the_mutated_body"

// readUpTo reads at most limit bytes; over reports that more follow, and
// rest yields every byte after buf.
func readUpTo(r io.Reader, limit int) (buf []byte, rest io.Reader, over bool, err error) {
	buf, err = io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, nil, false, err
	}
	if len(buf) > limit {
		return buf[:limit], io.MultiReader(bytes.NewReader(buf[limit:]), r), true, nil
	}
	return buf, r, false, nil
}

// checkContentLength enforces Envoy's rule for BUFFERED bodies sent with
// their headers: content-length stays, so a mutation that changes the
// body's length must come with a matching content-length.
func checkContentLength(h http.Header, body []byte) error {
	cl := h.Get("content-length")
	if cl == "" {
		return nil
	}
	if n, err := strconv.Atoi(cl); err != nil || n != len(body) {
		return errContentLength
	}
	return nil
}

// bufferedRequestBody sends the request body in one message (BUFFERED) or
// its first bufferLimit bytes (BUFFERED_PARTIAL), applies the reply and sets
// the body the router sends. It returns false when it answered the request.
func (st *stream) bufferedRequestBody(p *procStream, partial bool) bool {
	buf, rest, over, err := readUpTo(st.body, bufferLimit)
	if err != nil {
		st.bodyReadFailed()
		return false
	}
	st.touch()
	if over && !partial {
		// The filter manager's reply, which ext_proc then processes.
		st.localReply(http.StatusRequestEntityTooLarge, "Payload Too Large", "request_payload_too_large", "", nil)
		return false
	}
	out := p.exchange(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: buf, EndOfStream: !over},
	}}, "request_body")
	common, ok := st.handled(out, func(r *extprocv3.ProcessingResponse) *extprocv3.CommonResponse {
		return r.GetRequestBody().GetResponse()
	})
	if common == nil {
		if ok {
			st.body, st.bodyLen = io.MultiReader(bytes.NewReader(buf), rest), -1
			if !over {
				st.bodyLen = int64(len(buf))
			}
		}
		return ok
	}
	if err := st.applyRequestMutation(common.GetHeaderMutation(), p.keepsLength(false)); err != nil {
		return st.procFailed(&procFailure{status: p.cfg.statusOnError, details: mutationDetails(err)})
	}
	body := mutateBody(buf, common.GetBodyMutation())
	if over {
		st.body, st.bodyLen = io.MultiReader(bytes.NewReader(body), rest), -1
		return true
	}
	if !partial && p.mode.requestHeaders {
		if err := checkContentLength(st.r.Header, body); err != nil {
			return st.procFailed(&procFailure{status: p.cfg.statusOnError, details: contentLengthDetails})
		}
	}
	if partial {
		// Envoy removed content-length for BUFFERED_PARTIAL: the body goes
		// on chunked.
		st.body, st.bodyLen = bytes.NewReader(body), -1
	} else {
		st.setBody(body)
	}
	return true
}

// streamRequestBody sends the request body chunk by chunk while the router
// forwards the processed chunks upstream through a pipe.
func (st *stream) streamRequestBody(p *procStream) {
	src, length := st.body, st.bodyLen
	pr, pw := io.Pipe()
	st.body, st.bodyLen = pr, -1
	st.requestPipe = pr
	st.requestStreaming = make(chan struct{})
	go func() {
		defer close(st.requestStreaming)
		f := p.streamBody(st, src, length, false, func(b []byte) error {
			_, err := pw.Write(b)
			return err
		})
		if f != nil {
			st.setStreamFailure(f)
			pw.CloseWithError(errStreamFailed)
			return
		}
		pw.Close()
	}()
}

var (
	errStreamFailed = errors.New("ext_proc failed while streaming")
	// errRequestDone closes the request pipe once the router is done with
	// it, so the streaming goroutine never blocks on a reader that left.
	errRequestDone = errors.New("the upstream request is over")
)

// stopRequestStream unblocks and waits for a STREAMED request body: the
// pipe to the upstream is closed, the processor stream cancelled and client
// reads cut short. It returns the streaming failure, if one happened before.
func (st *stream) stopRequestStream() *procFailure {
	if st.requestStreaming == nil {
		return nil
	}
	select {
	case <-st.requestStreaming:
	default:
		st.requestPipe.CloseWithError(errRequestDone)
		if st.proc != nil {
			st.proc.cancel()
		}
		_ = http.NewResponseController(st.w).SetReadDeadline(time.Now())
		<-st.requestStreaming
		st.endProc() // cancelled mid-body: it can process nothing more
	}
	f := st.takeStreamFailure()
	if f != nil && f.details == sinkFailed {
		return nil // the router left first: not the processor's failure
	}
	return f
}

// sinkFailed marks a chunk that could not be handed on (the reader left).
const sinkFailed = "downstream_or_upstream_write_failed"

// streamBody sends src as body messages without waiting for their replies
// (several may be outstanding) while a second goroutine takes the replies in
// order and hands each processed chunk to sink. The last message carries
// end_of_stream. If the processor goes away (closes its stream, or fails
// with failure_mode_allow) the stream is detached and the remaining chunks
// pass through unprocessed, as in Envoy.
func (p *procStream) streamBody(st *stream, src io.Reader, length int64, response bool, sink func([]byte) error) *procFailure {
	kind := "request_body"
	if response {
		kind = "response_body"
	}
	type sent struct {
		data []byte
		// processed is false for a chunk that bypassed the processor.
		processed bool
	}
	queue := make(chan sent, 64)
	var failure *procFailure
	var failOnce sync.Once
	var failed atomic.Bool
	fail := func(f *procFailure) {
		failOnce.Do(func() { failure = f })
		failed.Store(true)
	}
	detach := func() {
		if !p.detached.Swap(true) {
			p.cancel() // later replies are ignored
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range queue {
			if failed.Load() {
				continue
			}
			data := c.data
			if c.processed && !p.detached.Load() {
				out := p.await()
				switch {
				case out.fail != nil && !out.fail.idle && (out.fail.closed || p.cfg.failureModeAllow):
					detach()
				case out.fail != nil:
					fail(out.fail)
					continue
				case out.immediate != nil:
					fail(&procFailure{immediate: out.immediate})
					continue
				default:
					var common *extprocv3.CommonResponse
					if response {
						common = out.resp.GetResponseBody().GetResponse()
					} else {
						common = out.resp.GetRequestBody().GetResponse()
					}
					data = mutateBody(data, common.GetBodyMutation())
				}
			}
			if err := sink(data); err != nil {
				fail(&procFailure{status: http.StatusBadGateway, details: sinkFailed})
				continue
			}
			st.touch()
		}
	}()
	var read int64
	buf := make([]byte, chunkSize)
	for !failed.Load() {
		n, err := src.Read(buf)
		read += int64(n)
		eof := errors.Is(err, io.EOF) || (length >= 0 && read >= length)
		if err != nil && !errors.Is(err, io.EOF) {
			if st.ctx.Err() != nil {
				fail(&procFailure{idle: true})
			} else {
				fail(&procFailure{status: http.StatusBadRequest, details: "downstream_remote_disconnect"})
			}
			break
		}
		if n == 0 && !eof {
			continue
		}
		st.touch()
		data := append([]byte(nil), buf[:n]...)
		switch {
		case p.detached.Load():
			queue <- sent{data: data}
		default:
			if f := p.send(bodyRequest(response, data, eof), kind); f != nil {
				if f.closed || p.cfg.failureModeAllow {
					detach()
					queue <- sent{data: data}
				} else {
					fail(f)
				}
			} else {
				queue <- sent{data: data, processed: true}
			}
		}
		if eof {
			break
		}
	}
	close(queue)
	<-done
	return failure
}

func bodyRequest(response bool, data []byte, eos bool) *extprocv3.ProcessingRequest {
	if response {
		return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: data, EndOfStream: eos}}}
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: data, EndOfStream: eos}}}
}
