package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/filters/mask"
)

// maskStreamBytes is the body BenchmarkMaskingStreamMemory streams: 1 GB,
// or CUSTOS_MASK_BENCH_BYTES.
func maskStreamBytes() int64 {
	if v, err := strconv.ParseInt(os.Getenv("CUSTOS_MASK_BENCH_BYTES"), 10, 64); err == nil && v > 0 {
		return v
	}
	return 1 << 30
}

// cardRecords is a block of JSON records (array elements, each followed by
// a comma) holding Luhn-valid card numbers, which the benchmark body
// repeats; its length is a multiple of nothing in particular, so the
// 64 KiB chunks cut records and card numbers at every offset.
func cardRecords() []byte {
	cards := []string{"4111 1111 1111 1111", "5500000000000004", "4012-8888-8888-1881", "340000000000009"}
	var b bytes.Buffer
	for i := 0; b.Len() < 1<<20; i++ {
		fmt.Fprintf(&b, `{"id":%d,"name":"Customer %d","card":%q,"amount":%d.%02d,"note":"paid by card, statement sent"},`,
			i, i, cards[i%len(cards)], i*37%100000, i%100)
	}
	return b.Bytes()
}

// heapPeak samples the Go heap's object bytes until stopped and returns the
// peak above the heap when it started.
type heapPeak struct {
	stop chan struct{}
	done sync.WaitGroup
	base uint64
	peak uint64
}

const heapMetric = "/memory/classes/heap/objects:bytes"

func heapNow() uint64 {
	s := []metrics.Sample{{Name: heapMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func startHeapPeak() *heapPeak {
	runtime.GC()
	h := &heapPeak{stop: make(chan struct{}), base: heapNow()}
	h.peak = h.base
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				if v := heapNow(); v > h.peak {
					h.peak = v
				}
			}
		}
	}()
	return h
}

// end stops sampling and returns the peak above the start, in MB.
func (h *heapPeak) end() float64 {
	close(h.stop)
	h.done.Wait()
	if v := heapNow(); v > h.peak {
		h.peak = v
	}
	return float64(h.peak-h.base) / (1 << 20)
}

// BenchmarkMaskingStreamMemory streams a 1 GB JSON body (an array of card
// records) through mask.Stream under the pci profile in 64 KiB chunks, as
// the data plane does, with the built-in WASM engine and the native one in
// the same run: MB/s per core and the Go heap's peak above its size before
// the body (the WASM instance's linear memory is in the Go heap). Each op
// is one whole body; CUSTOS_MASK_BENCH_BYTES sets a smaller one.
func BenchmarkMaskingStreamMemory(b *testing.B) {
	ctx := context.Background()
	w, err := mask.NewWASM(ctx, mask.Options{PoolSize: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close(ctx)
	native, err := mask.NewNative(mask.NativeOptions{})
	if err != nil {
		b.Fatal(err)
	}
	block := cardRecords()
	size := maskStreamBytes()
	for _, e := range []struct {
		name string
		e    mask.Engine
	}{{"wasm", w}, {"native", native}} {
		b.Run(e.name, func(b *testing.B) {
			b.SetBytes(size)
			var peak float64
			var redacted int
			for b.Loop() {
				h := startHeapPeak()
				var err error
				redacted, err = streamThrough(e.e, block, size)
				if err != nil {
					b.Fatal(err)
				}
				if p := h.end(); p > peak {
					peak = p
				}
			}
			if redacted == 0 {
				b.Fatal("nothing was masked")
			}
			b.ReportMetric(peak, "peak-heap-MB")
		})
	}
}

// streamThrough masks a JSON array of size bytes, the records of block
// repeated, in 64 KiB chunks; it returns the redactions seen in the output
// (a marker a chunk boundary cuts is not counted).
func streamThrough(e mask.Engine, block []byte, size int64) (int, error) {
	s, err := e.Open(mask.NewProfile("pci"), mask.Body{ContentType: "application/json"})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	const chunkSize = 64 << 10
	chunk := make([]byte, 0, chunkSize)
	chunk = append(chunk, '[')
	var sent int64
	off, redacted := 0, 0
	marker := []byte("[REDACTED:CARD]")
	for {
		for len(chunk) < chunkSize && sent+int64(len(chunk)) < size-2 {
			k := min(chunkSize-len(chunk), len(block)-off, int(size-2-sent-int64(len(chunk))))
			chunk = append(chunk, block[off:off+k]...)
			off = (off + k) % len(block)
		}
		end := sent+int64(len(chunk)) >= size-2
		if end {
			// close the array: drop a record cut short by the end, and
			// the comma before it
			if k := bytes.LastIndex(chunk, []byte("},")); k >= 0 {
				chunk = append(chunk[:k+1], ']')
			} else {
				chunk = append(chunk, ']')
			}
		}
		out, err := s.Mask(chunk, end)
		if err != nil {
			return redacted, err
		}
		redacted += bytes.Count(out, marker)
		sent += int64(len(chunk))
		chunk = chunk[:0]
		if end {
			return redacted, nil
		}
	}
}
