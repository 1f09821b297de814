package ui

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/custos-dev/custos/filters/identity"
)

// Cookie names. The session cookie is SameSite=Strict: no other site can
// make the browser send it, on a form or a link. The sign-in cookie is
// SameSite=Lax because it must come back on the issuer's redirect, a
// top-level navigation from another site.
const (
	sessionCookie = "custos_ui_session"
	loginCookie   = "custos_ui_login"
)

// errFull is the answer when the sessions are at their bound.
var errFull = errors.New("too many sessions; try again later")

// session is one signed-in approver.
type session struct {
	// token is the approver's access token, verified again on each
	// request so that an expired or no longer trusted token ends the
	// session. It never leaves the server.
	token     string
	principal identity.Principal
	// csrf is the token every form of the session carries.
	csrf    string
	expires time.Time
	// flash is the result of the last vote, shown once.
	flash *flash
}

// flash is a one-time message for the next page.
type flash struct {
	OK   bool
	Text string
}

// sessions are the signed-in approvers by session id.
type sessions struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{now: now, m: map[string]*session{}}
}

// start keeps a new session and returns its id.
func (s *sessions) start(token string, p identity.Principal, expires time.Time) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if len(s.m) >= maxSessions {
		for id, se := range s.m {
			if !now.Before(se.expires) {
				delete(s.m, id)
			}
		}
		if len(s.m) >= maxSessions {
			return "", errFull
		}
	}
	id := randomString(32)
	s.m[id] = &session{token: token, principal: p, csrf: randomString(32), expires: expires}
	return id, nil
}

// get returns a copy of session id unless it is unknown or expired.
func (s *sessions) get(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	if !s.now().Before(se.expires) {
		delete(s.m, id)
		return session{}, false
	}
	return *se, true
}

// update keeps p as session id's principal (verified again) and f as its
// flash when f is not nil.
func (s *sessions) update(id string, p *identity.Principal, f *flash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se, ok := s.m[id]; ok {
		if p != nil {
			se.principal = *p
		}
		if f != nil {
			se.flash = f
		}
	}
}

// takeFlash returns session id's flash and forgets it.
func (s *sessions) takeFlash(id string) *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[id]
	if !ok {
		return nil
	}
	f := se.flash
	se.flash = nil
	return f
}

// end forgets session id.
func (s *sessions) end(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// cookie is a cookie of the page: HttpOnly, Secure when the page is https.
func (p *Page) cookie(name, value, path string, sameSite http.SameSite, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: p.secure, SameSite: sameSite}
}

// sessionOf returns the request's session id and session.
func (p *Page) sessionOf(r *http.Request) (string, session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", session{}, false
	}
	se, ok := p.sessions.get(c.Value)
	return c.Value, se, ok
}
