package engine

import (
	"bytes"
	"fmt"
	"testing"
)

// benchJSON is a JSON document of about size bytes shaped like the mask
// package's benchmark document: customer records with a card, an IBAN or
// an SSN in some (valid checksums), to profile the engine natively.
func benchJSON(size int) []byte {
	cards := []string{"4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"}
	ibans := []string{"DE89370400440532013000", "GB82 WEST 1234 5698 7654 32"}
	var b bytes.Buffer
	b.WriteString(`{"customers":[`)
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"Customer %d","email":"user%d@example.com","created":"2026-03-%02dT10:20:30Z","balance":%d.%02d,"note":"called about the last statement, no action needed"`,
			100000+i, i, i, 1+i%28, i*37%100000, i%100)
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, `,"card":%q`, cards[i%3])
		case 1:
			fmt.Fprintf(&b, `,"iban":%q`, ibans[i%2])
		case 2:
			b.WriteString(`,"ssn":"123-45-6789"`)
		}
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// BenchmarkMaskerJSON masks the document in one call under the all and pci
// profiles, natively: where the guest's time goes, without wazero.
func BenchmarkMaskerJSON(b *testing.B) {
	for _, name := range []string{"all", "pci"} {
		c, _ := Builtin(name)
		p := mustProfile(b, c)
		for _, size := range []int{1 << 10, 64 << 10} {
			doc := benchJSON(size)
			b.Run(fmt.Sprintf("%s/%dKB", name, size>>10), func(b *testing.B) {
				m := NewMasker()
				b.SetBytes(int64(len(doc)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Mask(p, JSON, nil, doc, true); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
