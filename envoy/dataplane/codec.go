package dataplane

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The HTTP/1 codec: Envoy's server codec (Balsa, with the checks Envoy
// adds on top of it) in front of net/http. Go's server refuses some
// requests Envoy serves (two Host headers, `Expect: 200-ok`, a path with
// `%zz`), serves some Envoy refuses (HTTP/1.0, Transfer-Encoding with
// Content-Length, `get`, a request line with non-ASCII bytes) and answers
// its refusals itself in plain text. So the codec reads each request head
// and body off the connection as Envoy does, keeps what it parsed for the
// handler (requestHead), and hands net/http only a placeholder head that
// carries the framing: net/http still frames bodies, answers and keeps
// connections alive, but never judges a request. A request the codec
// refuses reaches the handler as a placeholder carrying the refusal, so
// that it is answered in order, as Envoy answers it (codecErrorReply). The
// codec also runs the connection timers Envoy runs from the codec's events:
// request_headers_timeout from a head's first byte, and the idle timeout.
// How a head is read and judged is in requesthead.go; the rules come from
// real Envoy 1.40 (codec_conformance_test.go).

// codecConnKey finds a request's codecConn in its context.
type codecConnKey struct{}

// codecListener puts each accepted connection behind the codec.
type codecListener struct {
	net.Listener
	dp *DataPlane
}

func (l *codecListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &codecConn{Conn: c, dp: l.dp, buf: make([]byte, 16<<10)}, nil
}

type codecState int

const (
	readingHead codecState = iota
	readingFixedBody
	readingChunkSize
	readingChunkExtension
	readingChunkData
	readingChunkEnd
	readingTrailers
	// draining: the connection carries no more requests (after a refusal,
	// a CONNECT or an upgrade): what arrives is read and dropped.
	draining
	// bodyFailed: a body the codec could not parse.
	bodyFailed
	// tunnelled: the connection was handed to an upgrade's tunnel.
	tunnelled
)

// errCodecBody is what reading a body the codec refused returns.
var errCodecBody = errors.New("http/1.1 protocol error in the request body")

// codecConn is one downstream connection behind the codec. Read, called by
// net/http only (one reader at a time), parses; the handler takes each
// request's head in order (takeHead).
type codecConn struct {
	net.Conn
	dp *DataPlane

	buf []byte // read buffer
	in  []byte // bytes read, not yet parsed
	out []byte // bytes for net/http

	state codecState
	// scanned is how much of a head in is known to hold no blank line.
	scanned int
	// remaining counts the bytes left in a content-length body or chunk.
	remaining uint64
	// chunk-size parsing: a digit seen, the last byte was a CR.
	sawDigit, lastCR bool
	// trailerLine is the length of the trailer line being read, -1 at the
	// start of a line.
	trailerLine int

	mu sync.Mutex
	// heads are the heads handed to net/http and not yet taken.
	heads   []*requestHead
	bodyErr *codecError
	// readDeadline is the deadline net/http last set; the codec sets an
	// earlier one to stop a read when request_headers_timeout fires.
	readDeadline time.Time
	headTimedOut bool
	headTimer    *time.Timer
	// headOpen: a head has begun and is not whole yet.
	headOpen bool
	// idle timeout: the timer, the requests begun (from a head's first
	// byte) and answered (net/http back to http.StateIdle), and whether
	// the connection drains (its next response closes it).
	idleTimer        *time.Timer
	begun, answered  int
	draining, closed bool
}

// limits reads the active listener's settings.
func (c *codecConn) limits() *hcmConfig {
	if cfg := c.dp.active.Load(); cfg != nil {
		return cfg.listener.hcm
	}
	return &hcmConfig{maxRequestHeaderSize: 60 << 10, idleTimeout: time.Hour, drainTimeout: defaultDrainTimeout}
}

func (c *codecConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *codecConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *codecConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.stopTimersLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}

func (c *codecConn) stopTimersLocked() {
	if c.headTimer != nil {
		c.headTimer.Stop()
		c.headTimer = nil
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
		c.idleTimer = nil
	}
}

func (c *codecConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		switch c.state {
		case draining:
			return c.drain()
		case tunnelled:
			return 0, io.EOF
		case bodyFailed:
			return 0, errCodecBody
		}
		if c.parse() {
			continue
		}
		n, err := c.Conn.Read(c.buf)
		c.in = append(c.in, c.buf[:n]...)
		if err != nil && n == 0 {
			if c.timedOut(err) {
				// request_headers_timeout: the head is answered 408,
				// through the filters, and the connection closes.
				c.refuseHead(&codecError{status: http.StatusRequestTimeout, body: "request header timeout",
					details: "request_header_timeout", filtered: true})
				continue
			}
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// raw hands the connection over to a tunnel (an upgrade the route
// allowed): the bytes read after the upgrade's head and not parsed, and
// the connection itself; the codec reads no more.
func (c *codecConn) raw() (net.Conn, []byte) {
	c.state = tunnelled
	pending := c.in
	c.in = nil
	return c.Conn, pending
}

// drain reads and drops whatever arrives until the connection ends or
// net/http stops the read.
func (c *codecConn) drain() (int, error) {
	for {
		if _, err := c.Conn.Read(c.buf); err != nil {
			return 0, err
		}
	}
}

// timedOut reports whether err ends a read that request_headers_timeout
// cut, and restores net/http's deadline.
func (c *codecConn) timedOut(err error) bool {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.headTimedOut || c.state != readingHead {
		return false
	}
	c.headTimedOut = false
	_ = c.Conn.SetReadDeadline(c.readDeadline)
	return true
}

// parse consumes what it can of in; it reports whether it made progress.
func (c *codecConn) parse() bool {
	progress := false
	for len(c.in) > 0 && len(c.out) == 0 {
		var ok bool
		switch c.state {
		case readingHead:
			ok = c.parseHead()
		case readingFixedBody:
			n := min(uint64(len(c.in)), c.remaining)
			c.out = append(c.out, c.in[:n]...)
			c.in = c.in[n:]
			c.remaining -= n
			if c.remaining == 0 {
				c.state = readingHead
			}
			ok = true
		case readingChunkSize, readingChunkExtension, readingChunkData, readingChunkEnd, readingTrailers:
			ok = c.parseChunked()
		default:
			return progress
		}
		if !ok {
			return progress
		}
		progress = true
	}
	return progress
}

// parseHead looks for a whole head in in and hands it on; false when more
// bytes are needed.
func (c *codecConn) parseHead() bool {
	// Blank lines before a request line are skipped.
	skip := 0
	for skip < len(c.in) && (c.in[skip] == '\r' || c.in[skip] == '\n') {
		skip++
	}
	if skip > 0 {
		c.in = c.in[skip:]
		c.scanned = 0
		return true
	}
	c.headStarted()
	lim := c.limits()
	end := -1
	for i := c.scanned; i < len(c.in); i++ {
		if c.in[i] != '\n' {
			continue
		}
		// A line that is empty (or only a CR) ends the head.
		if i > 0 && (c.in[i-1] == '\n' || (c.in[i-1] == '\r' && i > 1 && c.in[i-2] == '\n')) {
			end = i + 1
			break
		}
	}
	limit := lim.maxRequestHeaderSize
	if end < 0 || end > limit {
		if len(c.in) >= limit {
			c.refuseHead(&codecError{status: http.StatusRequestHeaderFieldsTooLarge,
				body: http.StatusText(http.StatusRequestHeaderFieldsTooLarge), details: detailsHeadersTooLarge})
			return true
		}
		if end < 0 {
			c.scanned = max(0, len(c.in)-2)
			return false
		}
	}
	raw := c.in[:end]
	c.in = c.in[end:]
	c.scanned = 0
	c.headDone()
	h := parseRequestHead(raw, lim)
	if h.err != nil {
		c.refuseHead(h.err)
		return true
	}
	c.mu.Lock()
	c.heads = append(c.heads, h)
	c.mu.Unlock()
	var b bytes.Buffer
	b.WriteString(h.method + " / HTTP/1.1\r\nHost: envoy\r\n")
	switch {
	case h.connect || h.upgrade:
		// Nothing after the head is parsed as HTTP again: the reply
		// closes the connection.
		b.WriteString("Connection: close\r\n")
		c.state = draining
	case h.length < 0:
		b.WriteString("Transfer-Encoding: chunked\r\n")
		c.state, c.sawDigit, c.lastCR, c.remaining = readingChunkSize, false, false, 0
		h.bodyErr = c.lookAhead()
	case h.length > 0:
		b.WriteString("Content-Length: " + strconv.FormatInt(h.length, 10) + "\r\n")
		c.state, c.remaining = readingFixedBody, uint64(h.length)
	}
	if h.close && c.state != draining {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	c.out = append(c.out, b.Bytes()...)
	return true
}

// refuseHead hands net/http a placeholder for a refused request and reads
// nothing more from the connection.
func (c *codecConn) refuseHead(e *codecError) {
	c.headDone()
	c.mu.Lock()
	c.heads = append(c.heads, &requestHead{method: http.MethodGet, err: e})
	c.mu.Unlock()
	c.in = nil
	c.out = append(c.out, "GET / HTTP/1.1\r\nHost: envoy\r\nConnection: close\r\n\r\n"...)
	c.state = draining
}

// parseChunked decodes a chunked body as Balsa does and hands net/http the
// same data in chunks of its own, without extensions or trailers (Envoy's
// codec drops trailers).
func (c *codecConn) parseChunked() bool {
	switch c.state {
	case readingChunkSize:
		for i, b := range c.in {
			if d, ok := hexDigit(b); ok {
				if c.remaining > (1<<64-1)/16 {
					return c.failBody()
				}
				c.remaining = c.remaining*16 + uint64(d)
				c.sawDigit = true
				continue
			}
			if !c.sawDigit || (b != ' ' && b != '\t' && b != '\r' && b != '\n' && b != ';') {
				return c.failBody()
			}
			c.in = c.in[i:]
			c.state = readingChunkExtension
			return true
		}
		c.in = c.in[:0]
		return true
	case readingChunkExtension:
		for i, b := range c.in {
			// A CR must be followed by LF, and LF preceded by CR.
			if c.lastCR && b != '\n' {
				return c.failBody()
			}
			if b == '\n' && !c.lastCR {
				return c.failBody()
			}
			c.lastCR = b == '\r'
			if b != '\n' {
				continue
			}
			c.in = c.in[i+1:]
			c.lastCR = false
			if c.remaining == 0 {
				c.state, c.trailerLine = readingTrailers, -1
			} else {
				c.state = readingChunkData
			}
			return true
		}
		c.in = c.in[:0]
		return true
	case readingChunkData:
		n := min(uint64(len(c.in)), c.remaining)
		c.out = strconv.AppendUint(c.out, n, 16)
		c.out = append(c.out, "\r\n"...)
		c.out = append(c.out, c.in[:n]...)
		c.out = append(c.out, "\r\n"...)
		c.in = c.in[n:]
		c.remaining -= n
		if c.remaining == 0 {
			c.state = readingChunkEnd
		}
		return true
	case readingChunkEnd:
		// Whatever stands between a chunk's data and the next LF is
		// dropped (Balsa warns of stray data and goes on).
		i := bytes.IndexByte(c.in, '\n')
		if i < 0 {
			c.in = c.in[:0]
			return true
		}
		c.in = c.in[i+1:]
		c.state, c.sawDigit, c.remaining = readingChunkSize, false, 0
		return true
	case readingTrailers:
		// Trailer lines, dropped, up to a blank line; each needs a colon.
		for i, b := range c.in {
			if b != '\n' {
				if c.trailerLine < 0 {
					c.trailerLine = 0
				}
				if b != '\r' {
					c.trailerLine++
				}
				continue
			}
			if c.trailerLine <= 0 {
				c.in = c.in[i+1:]
				c.out = append(c.out, "0\r\n\r\n"...)
				c.state = readingHead
				return true
			}
			c.trailerLine = -1
		}
		if c.trailerLine > c.limits().maxRequestHeaderSize {
			return c.failBody()
		}
		c.in = c.in[:0]
		return true
	}
	return false
}

// lookAhead parses, without consuming them, the body bytes already read
// with a chunked request's head, and returns the refusal they lead to.
func (c *codecConn) lookAhead() *codecError {
	t := &codecConn{dp: c.dp, state: c.state, in: bytes.Clone(c.in)}
	for len(t.in) > 0 && t.state != readingHead && t.state != bodyFailed {
		t.out = t.out[:0]
		if !t.parseChunked() {
			break
		}
	}
	return t.bodyErr
}

// failBody ends a body the codec refuses: net/http's reads of it fail,
// and the handler finds why (bodyError).
func (c *codecConn) failBody() bool {
	c.mu.Lock()
	c.bodyErr = refuse(http.StatusBadRequest, detailsCodecError)
	c.mu.Unlock()
	c.in = nil
	c.state = bodyFailed
	return true
}

// bodyError is why the codec refused the current request's body, nil if
// it did not.
func (c *codecConn) bodyError() *codecError {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bodyErr
}

// takeHead returns the head of the request net/http is serving: heads are
// handed on and served in order, one at a time.
func (c *codecConn) takeHead() *requestHead {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.heads) == 0 {
		return nil
	}
	h := c.heads[0]
	c.heads = c.heads[1:]
	return h
}

func hexDigit(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

// Connection timers. A request is under way from its head's first byte
// until net/http has written its response (http.StateIdle);
// request_headers_timeout runs from a head's first byte until the head is
// whole, and the idle timeout while no request is under way.

const defaultDrainTimeout = 5 * time.Second // HttpConnectionManager drain_timeout's default

// headStarted notes a head's first byte.
func (c *codecConn) headStarted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.headOpen || c.closed {
		return
	}
	c.headOpen = true
	c.begun++
	if c.idleTimer != nil {
		c.idleTimer.Stop()
		c.idleTimer = nil
	}
	if d := c.limits().requestHeadersTimeout; d > 0 {
		c.headTimer = time.AfterFunc(d, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.headTimer == nil {
				return
			}
			c.headTimer = nil
			c.headTimedOut = true
			// Stop the read under way; timedOut puts net/http's
			// deadline back.
			_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
		})
	}
}

// headDone notes that a head is whole (or refused).
func (c *codecConn) headDone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.headOpen = false
	if c.headTimer != nil {
		c.headTimer.Stop()
		c.headTimer = nil
	}
}

// connState follows net/http's view of the connection (http.Server
// ConnState).
func (c *codecConn) connState(s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s {
	case http.StateNew:
		c.armIdleLocked()
	case http.StateIdle:
		c.answered++
		c.armIdleLocked()
	case http.StateClosed, http.StateHijacked:
		c.closed = true
		c.stopTimersLocked()
	}
}

// armIdleLocked starts the idle timeout: a connection that never carried a
// request is closed when it fires; one that did drains (its next response
// closes it) and is closed after drain_timeout if still idle, as Envoy's
// connection manager does.
func (c *codecConn) armIdleLocked() {
	if c.closed || c.begun > c.answered { // a request is under way
		return
	}
	lim := c.limits()
	if lim.idleTimeout <= 0 {
		return
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.idleTimer = time.AfterFunc(lim.idleTimeout, func() {
		c.mu.Lock()
		if c.begun > c.answered || c.closed {
			c.mu.Unlock()
			return
		}
		if c.begun == 0 {
			c.mu.Unlock()
			_ = c.Close()
			return
		}
		c.draining = true
		c.idleTimer = time.AfterFunc(lim.drainTimeout, func() {
			c.mu.Lock()
			idle := c.begun == c.answered && !c.closed
			c.mu.Unlock()
			if idle {
				_ = c.Close()
			}
		})
		c.mu.Unlock()
	})
}

// isDraining reports whether the connection's next response closes it.
func (c *codecConn) isDraining() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

// connContext gives each request its connection's codecConn.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*codecConn); ok {
		return context.WithValue(ctx, codecConnKey{}, cc)
	}
	return ctx
}
