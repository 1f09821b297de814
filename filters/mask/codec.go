package mask

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"sync"
)

// codec decodes a gzip or deflate body chunk by chunk and re-encodes the
// masked bytes, so a compressed body is never passed through. The
// decompressor reads from a goroutine that waits for each chunk (flate
// cannot resume after running out of input); it stops at the body's end, on
// Close, or when the stream is collected.
type codec struct {
	enc      encoding
	in       chan []byte
	out      chan piece
	ack      chan struct{}
	quit     chan struct{}
	started  bool
	waiting  bool
	finished bool
	buf      bytes.Buffer
	w        interface {
		io.Writer
		Flush() error
		Close() error
	}
}

type piece struct {
	data []byte
	need bool
	eof  bool
	err  error
}

var closeMu sync.Mutex

// closeOnce closes q unless it is closed.
func closeOnce(q chan struct{}) {
	closeMu.Lock()
	defer closeMu.Unlock()
	select {
	case <-q:
	default:
		close(q)
	}
}

func newCodec(enc encoding) *codec {
	c := &codec{enc: enc, in: make(chan []byte), out: make(chan piece), ack: make(chan struct{}), quit: make(chan struct{})}
	if enc == gzipEnc {
		c.w, _ = gzip.NewWriterLevel(&c.buf, gzip.BestSpeed)
	} else {
		c.w, _ = zlib.NewWriterLevel(&c.buf, flate.BestSpeed)
	}
	return c
}

var errQuit = errors.New("codec closed")

func (c *codec) send(p piece) bool {
	select {
	case c.out <- p:
		return true
	case <-c.quit:
		return false
	}
}

// chanReader hands the decompressor the chunks Mask feeds it.
type chanReader struct {
	c      *codec
	cur    []byte
	closed bool
}

func (r *chanReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.closed {
			return 0, io.EOF
		}
		if !r.c.send(piece{need: true}) {
			return 0, errQuit
		}
		select {
		case b, ok := <-r.c.in:
			if !ok {
				r.closed = true
				continue
			}
			r.cur = b
		case <-r.c.quit:
			return 0, errQuit
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

func (c *codec) run() {
	src := &chanReader{c: c}
	var r io.Reader
	var err error
	if c.enc == gzipEnc {
		r, err = gzip.NewReader(src)
	} else {
		r, err = zlib.NewReader(src)
	}
	if err != nil {
		c.send(piece{err: err})
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if !c.send(piece{data: buf[:n]}) {
				return
			}
			select {
			case <-c.ack:
			case <-c.quit:
				return
			}
		}
		if err == io.EOF {
			c.send(piece{eof: true})
			return
		}
		if err != nil {
			c.send(piece{err: err})
			return
		}
	}
}

// mask decodes chunk, masks what it decodes with f and returns the
// re-encoded output so far.
func (c *codec) mask(chunk []byte, end bool, f func(dst, plain []byte, end bool) ([]byte, error)) ([]byte, error) {
	if !c.started {
		c.started = true
		go c.run()
	}
	var plainOut []byte
	write := func(plain []byte, final bool) error {
		out, err := f(plainOut[:0], plain, final)
		if err != nil {
			return err
		}
		plainOut = out
		_, err = c.w.Write(out)
		return err
	}
	fed, closed := false, false
loop:
	for !c.finished {
		if c.waiting {
			switch {
			case !fed:
				c.waiting, fed = false, true
				c.in <- chunk
				continue
			case end && !closed:
				c.waiting, closed = false, true
				close(c.in)
				continue
			}
			break loop
		}
		p := <-c.out
		switch {
		case p.need:
			c.waiting = true
		case p.data != nil:
			err := write(p.data, false)
			c.ack <- struct{}{}
			if err != nil {
				return nil, err
			}
		case p.eof:
			c.finished = true
			if err := write(nil, true); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("decode %s body: %w", c.name(), p.err)
		}
	}
	if end {
		if !c.finished {
			return nil, fmt.Errorf("decode %s body: it ended early", c.name())
		}
		if err := c.w.Close(); err != nil {
			return nil, err
		}
	} else if err := c.w.Flush(); err != nil {
		return nil, err
	}
	out := bytes.Clone(c.buf.Bytes())
	c.buf.Reset()
	return out, nil
}

func (c *codec) name() string {
	if c.enc == gzipEnc {
		return "gzip"
	}
	return "deflate"
}

func (c *codec) close() { closeOnce(c.quit) }
