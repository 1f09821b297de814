package policy

import (
	"context"
	"testing"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/request"
)

func TestAllowConnectionSaysWhy(t *testing.T) {
	d, err := AllowConnection{}.Decide(context.Background(), Input{Request: &request.Request{Connection: config.Connection{Name: "customers"}}})
	if err != nil || !d.Allow || d.Approval != nil || d.Revision == "" || len(d.Reasons) != 1 {
		t.Fatalf("%+v %v", d, err)
	}
}
