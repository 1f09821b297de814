package identity

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// MaxTokenSize is the largest token read, 64 KiB: Envoy's default header
// limit (60 KiB) stops larger ones first.
const MaxTokenSize = 64 << 10

// unverified is what a token says about itself before anything is
// verified: enough to pick the issuer whose keys and rules apply. None of it
// is trusted; the issuer's signature check follows.
type unverified struct {
	alg, kid, iss string
}

// peek reads the header and the iss claim of a compact JWS without
// verifying it. A token that is not a compact JWS with a JSON object as
// header and claims is malformed; a token without iss names no issuer.
func peek(token string) (unverified, error) {
	var u unverified
	if len(token) > MaxTokenSize {
		return u, malformed("larger than %d bytes", MaxTokenSize)
	}
	h, rest, ok1 := strings.Cut(token, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		if strings.Count(token, ".") == 4 {
			return u, malformed("an encrypted token (JWE); only signed tokens (JWS) are accepted")
		}
		return u, malformed("not a compact JWS (three base64url parts separated by dots)")
	}
	hb, err := b64(h)
	if err != nil {
		return u, malformed("header: %v", err)
	}
	pb, err := b64(p)
	if err != nil {
		return u, malformed("claims: %v", err)
	}
	if _, err := b64(sig); err != nil {
		return u, malformed("signature: %v", err)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr == nil {
		return u, malformed("the header is not a JSON object")
	}
	if u.alg, err = member(hdr, "alg"); err != nil || u.alg == "" {
		return u, malformed("the header has no alg")
	}
	if u.kid, err = member(hdr, "kid"); err != nil {
		return u, malformed("kid is not a string")
	}
	var cl map[string]json.RawMessage
	if err := json.Unmarshal(pb, &cl); err != nil || cl == nil {
		return u, malformed("the claims are not a JSON object")
	}
	if u.iss, err = member(cl, "iss"); err != nil {
		return u, malformed("iss is not a string")
	}
	return u, nil
}

// claimed reads what a refused token says about its caller (iss, sub,
// kid), unverified, each value cut to MaxClaimedSize bytes of valid UTF-8.
func claimed(token string) Claimed {
	var c Claimed
	h, rest, _ := strings.Cut(token, ".")
	p, _, _ := strings.Cut(rest, ".")
	if hb, err := b64(h); err == nil {
		var hdr map[string]json.RawMessage
		if json.Unmarshal(hb, &hdr) == nil {
			kid, _ := member(hdr, "kid")
			c.KeyID = cutClaimed(kid)
		}
	}
	if pb, err := b64(p); err == nil {
		var cl map[string]json.RawMessage
		if json.Unmarshal(pb, &cl) == nil {
			iss, _ := member(cl, "iss")
			sub, _ := member(cl, "sub")
			c.Issuer, c.Subject = cutClaimed(iss), cutClaimed(sub)
		}
	}
	return c
}

func cutClaimed(s string) string {
	if len(s) > MaxClaimedSize {
		s = s[:MaxClaimedSize]
	}
	return strings.ToValidUTF8(s, "")
}

// b64 decodes one part of a compact JWS: unpadded base64url.
func b64(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("not base64url (at byte %d)", int64(ce))
		}
		return nil, errors.New("not base64url")
	}
	return b, nil
}

// member returns the string member name of m, "" when absent.
func member(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", err
	}
	return s, nil
}

func malformed(format string, args ...any) *Error {
	return &Error{Check: CheckMalformed, Err: fmt.Errorf(format, args...)}
}

// times are a token's exp, nbf and iat (zero when absent).
type times struct {
	exp, nbf, iat time.Time
}

// tokenTimes reads exp (required), nbf and iat (optional), NumericDate
// values (seconds since the epoch, RFC 7519).
func tokenTimes(c map[string]any) (times, error) {
	var t times
	var err error
	if _, ok := c["exp"]; !ok {
		return t, malformed("no exp claim")
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"exp", &t.exp}, {"nbf", &t.nbf}, {"iat", &t.iat}} {
		if *f.dst, err = numericDate(c, f.name); err != nil {
			return t, err
		}
	}
	return t, nil
}

func numericDate(c map[string]any, name string) (time.Time, error) {
	v, ok := c[name]
	if !ok {
		return time.Time{}, nil
	}
	n, ok := v.(float64)
	if !ok || math.IsNaN(n) || n < 0 || n > 1e11 {
		return time.Time{}, malformed("%s is not a date (seconds since 1970)", name)
	}
	sec, frac := math.Modf(n)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}

// check applies the time checks with skew: a token is expired from exp +
// skew on (RFC 7519: on or after exp), and not yet valid while nbf or iat
// is more than skew ahead.
func (t times) check(now time.Time, skew time.Duration) error {
	switch {
	case !now.Before(t.exp.Add(skew)):
		return &Error{Check: CheckExpired, Err: fmt.Errorf("exp %s is %s or more before now", t.exp.UTC().Format(time.RFC3339), skew)}
	case !t.nbf.IsZero() && t.nbf.After(now.Add(skew)):
		return &Error{Check: CheckNotYetValid, Err: fmt.Errorf("nbf %s is more than %s after now", t.nbf.UTC().Format(time.RFC3339), skew)}
	case !t.iat.IsZero() && t.iat.After(now.Add(skew)):
		return &Error{Check: CheckNotYetValid, Err: fmt.Errorf("iat %s is more than %s after now", t.iat.UTC().Format(time.RFC3339), skew)}
	}
	return nil
}

// checkAudience accepts a token one of whose aud values (a string or a
// list of strings) is one of audiences.
func checkAudience(c map[string]any, audiences []string) error {
	var got []string
	switch v := c["aud"].(type) {
	case string:
		got = []string{v}
	case []any:
		for _, a := range v {
			s, ok := a.(string)
			if !ok {
				return malformed("aud is not a string or a list of strings")
			}
			got = append(got, s)
		}
	case nil:
		if _, present := c["aud"]; !present {
			return &Error{Check: CheckAudience, Err: errors.New("no aud claim")}
		}
		return malformed("aud is not a string or a list of strings")
	default:
		return malformed("aud is not a string or a list of strings")
	}
	for _, a := range got {
		if slices.Contains(audiences, a) {
			return nil
		}
	}
	return &Error{Check: CheckAudience, Err: fmt.Errorf("aud %s is none of the issuer's audiences", cutList(got))}
}

// cutList shows at most three values, each at most 64 bytes.
func cutList(vs []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range vs {
		if i == 3 {
			fmt.Fprintf(&b, " and %d more", len(vs)-3)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(cut(v))
	}
	b.WriteByte(']')
	return b.String()
}

// cut quotes s, at most 64 bytes of it.
func cut(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return fmt.Sprintf("%q", s)
}
