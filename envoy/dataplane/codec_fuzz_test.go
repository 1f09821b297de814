package dataplane

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// fuzzConn is a connection whose peer sent data, then closed.
type fuzzConn struct {
	net.Conn
	r io.Reader
}

func (c *fuzzConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *fuzzConn) SetReadDeadline(time.Time) error    { return nil }
func (c *fuzzConn) SetDeadline(time.Time) error        { return nil }
func (c *fuzzConn) Close() error                       { return nil }
func (c *fuzzConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *fuzzConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *fuzzConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *fuzzConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzCodecConn: whatever a client sends, the codec never panics, and what
// it hands net/http parses as requests, one per head it keeps for the
// handler, each either refused or with a method Envoy accepts; a body is
// never longer than what was sent. It tests the codec alone (no "envoy"
// run); TestCodec* hold real Envoy to the same rules.
func FuzzCodecConn(f *testing.F) {
	for _, s := range []string{
		"GET /x HTTP/1.1\r\nHost: t\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3;e\r\nabcX\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET http://h/ HTTP/1.1\r\n\r\n",
		"\r\nGET /x HTTP/1.0\nHost: t\n\n", "CONNECT t:443 HTTP/1.1\r\n\r\nxx", "GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &codecConn{Conn: &fuzzConn{r: bytes.NewReader(data)}, dp: &DataPlane{}, buf: make([]byte, 64)}
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			h := c.takeHead()
			if h == nil {
				t.Fatalf("net/http read a request the codec kept no head for")
			}
			if h.err == nil && !envoyMethods[h.method] {
				t.Fatalf("head with method %q handed on", h.method)
			}
			n, _ := io.Copy(io.Discard, req.Body)
			if n > int64(len(data)) {
				t.Fatalf("a body of %d bytes from %d sent", n, len(data))
			}
		}
	})
}
