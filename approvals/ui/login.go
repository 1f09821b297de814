package ui

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// login is one sign-in in progress: what the callback checks and presents.
// It travels in the sign-in cookie, signed with the page's key, so that a
// callback is accepted only in the browser that started the sign-in and
// sign-ins in progress take no memory that a stranger could fill.
type login struct {
	state    string
	verifier string
	expires  time.Time
}

// seal is in as the sign-in cookie's value: state, verifier and expiry
// (base64url and digits, so never a dot) and their HMAC-SHA256.
func (p *Page) seal(in login) string {
	payload := in.state + "." + in.verifier + "." + strconv.FormatInt(in.expires.Unix(), 10)
	return payload + "." + p.sign(payload)
}

// unseal returns the sign-in of a cookie value that seal made and that has
// not expired.
func (p *Page) unseal(v string) (login, bool) {
	i := strings.LastIndexByte(v, '.')
	if i < 0 || !hmac.Equal([]byte(v[i+1:]), []byte(p.sign(v[:i]))) {
		return login{}, false
	}
	parts := strings.Split(v[:i], ".")
	if len(parts) != 3 {
		return login{}, false
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || !p.o.Now().Before(time.Unix(exp, 0)) {
		return login{}, false
	}
	return login{state: parts[0], verifier: parts[1], expires: time.Unix(exp, 0)}, true
}

func (p *Page) sign(payload string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte("custos-ui-login\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
