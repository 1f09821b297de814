package audit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// A frame holds one record (an event, or a signed checkpoint) in a segment or
// checkpoints file:
//
//	length  uint32, big endian: the payload's length, 1 to MaxRecordSize
//	crc     uint32, big endian: CRC-32C of length and payload
//	payload length bytes
//
// A crash can leave a partly written frame at the end of a file (a torn
// tail); the checksum finds it, and recovery cuts it. The checksum is not a
// defence against tampering: the Merkle tree and the signed checkpoints are.

// frameHeaderSize is the size of a frame's length and checksum.
const frameHeaderSize = 8

// MaxRecordSize is the largest event or checkpoint the log stores.
const MaxRecordSize = 1 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn means the bytes at the end of a file are not a whole, intact frame.
var errTorn = errors.New("torn or corrupt record")

func frameChecksum(header, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, header[:4])
	return crc32.Update(c, castagnoli, payload)
}

// appendFrame appends the frame of payload to b.
func appendFrame(b, payload []byte) []byte {
	var h [frameHeaderSize]byte
	binary.BigEndian.PutUint32(h[:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[4:], frameChecksum(h[:], payload))
	b = append(b, h[:]...)
	return append(b, payload...)
}

// frameReader reads frames from an untrusted stream.
type frameReader struct {
	r   *bufio.Reader
	off int64 // offset of the next frame
	buf []byte
}

func newFrameReader(r io.Reader, off int64) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 1<<16), off: off}
}

// next returns the next frame's payload, valid until the next call, and the
// offset it started at. It returns io.EOF at a clean end (the stream ends
// where a frame ends) and errTorn when the rest of the stream is not an
// intact frame; other errors are the reader's.
func (fr *frameReader) next() ([]byte, int64, error) {
	var h [frameHeaderSize]byte
	_, err := io.ReadFull(fr.r, h[:])
	if err == io.EOF {
		return nil, fr.off, io.EOF
	}
	if err == io.ErrUnexpectedEOF {
		return nil, fr.off, errTorn
	}
	if err != nil {
		return nil, fr.off, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n == 0 || n > MaxRecordSize {
		return nil, fr.off, errTorn
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	p := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, p); err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil, fr.off, errTorn
	} else if err != nil {
		return nil, fr.off, err
	}
	if binary.BigEndian.Uint32(h[4:]) != frameChecksum(h[:], p) {
		return nil, fr.off, errTorn
	}
	start := fr.off
	fr.off += frameHeaderSize + int64(n)
	return p, start, nil
}
