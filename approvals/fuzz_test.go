package approvals

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeBody: any body either decodes to a vote within the limits or
// is refused; never a panic.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{"", "{}", `{"comment":"ok"}`, `{"reason":"no"}`, `{"comment":1}`, `{"x":1}`,
		`{} {}`, `null`, `[]`, `{"comment":"\u0000"}`, " \n", `{"comment":"a","comment":"b"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := decodeBody(strings.NewReader(s))
		if err != nil {
			return
		}
		if utf8.RuneCountInString(b.Comment) > MaxCommentRunes || utf8.RuneCountInString(b.Reason) > MaxCommentRunes {
			t.Fatalf("accepted an over-long comment from %q", s)
		}
	})
}
