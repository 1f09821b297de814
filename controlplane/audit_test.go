package controlplane

import (
	"strings"
	"testing"

	"github.com/custos-dev/custos/filters/record"
)

// What an event says of the request in text is masked with profile all
// before it enters the log: a card number in a path, a statement, a reason.
func TestScrubMasksTheRequestsTextBeforeTheLog(t *testing.T) {
	card := "4111111111111111"
	e := scrub(record.Event{
		Path:    "/customers/by-card/" + card,
		Summary: "SELECT * FROM cards WHERE pan = '" + card + "'",
		Reasons: []string{"this read action (GET /by-card/" + card + ") needs read access"},
		Detail:  "forbidden: " + card,
		Method:  "GET",
	})
	for _, s := range append([]string{e.Path, e.Summary, e.Detail}, e.Reasons...) {
		if strings.Contains(s, card) || !strings.Contains(s, "REDACTED") {
			t.Fatalf("unmasked: %q", strings.ReplaceAll(s, card, "<card>"))
		}
	}
	if e.Method != "GET" {
		t.Fatal("scrub changed what it need not")
	}
	if got := scrub(record.Event{Path: "/customers/7"}).Path; got != "/customers/7" {
		t.Fatalf("a plain path changed: %q", got)
	}
}
