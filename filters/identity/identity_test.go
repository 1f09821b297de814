package identity

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestAnonymousAndErrors(t *testing.T) {
	p, err := Anonymous{}.Verify(context.Background(), Credentials{Bearer: "ignored"})
	if err != nil || p.Kind != KindAnonymous || p.ID() != "/anonymous" {
		t.Fatalf("%+v %v", p, err)
	}
	e := fmt.Errorf("verify: %w", &Error{Check: "expired", Err: errors.New("exp in the past")})
	if !IsUnauthenticated(e) || IsUnauthenticated(errors.New("jwks unreachable")) {
		t.Fatal("IsUnauthenticated does not tell verification failures from stage failures")
	}
	if (&Error{Check: "missing"}).Error() != "token missing" {
		t.Fatal((&Error{Check: "missing"}).Error())
	}
}
