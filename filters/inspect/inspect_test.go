package inspect

import (
	"context"
	"testing"

	"github.com/custos-dev/custos/config"
	"github.com/custos-dev/custos/filters/request"
)

func TestHTTPClassifiesByMethod(t *testing.T) {
	for method, want := range map[string]Risk{
		"GET": RiskRead, "HEAD": RiskRead, "OPTIONS": RiskRead,
		"POST": RiskWrite, "PUT": RiskWrite, "PATCH": RiskWrite,
		"DELETE": RiskDestructive, "PROPFIND": RiskUnknown, "get": RiskUnknown,
	} {
		a, err := HTTP{}.Inspect(context.Background(), &request.Request{Method: method, Path: "/a", Connection: config.Connection{Name: "c"}})
		if err != nil || a.Risk != want || a.Kind != KindHTTP || a.Summary != method+" /a on c" {
			t.Errorf("%s: %+v %v, want risk %s", method, a, err, want)
		}
	}
}
