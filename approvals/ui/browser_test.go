package ui_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custos-dev/custos/controlplane"
	"github.com/custos-dev/custos/devissuer"
	"github.com/custos-dev/custos/stack"
	"github.com/custos-dev/custos/stack/stacktest"
)

// chrome is the one headless Chromium of the test binary, started by the
// first test that needs it and stopped by TestMain.
var chrome struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if chrome.cancel != nil {
		chrome.cancel()
	}
	os.Exit(code)
}

// tab is a new tab, in a browser context of its own (no cookies shared
// with another test), of the package's Chromium: Debian's chromium,
// headless, without the sandbox that root cannot have. Without Chromium
// the test skips with one line, except under CI=true, where it fails.
func tab(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("Chromium is not installed (CI=true): apt-get install chromium")
		}
		t.Skip("Chromium is not installed: apt-get install chromium")
	}
	chrome.once.Do(func() {
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
			chromedp.DisableGPU, chromedp.Flag("no-proxy-server", true))
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		chrome.ctx = bctx
		chrome.cancel = func() { bcancel(); acancel() }
		chrome.err = chromedp.Do(bctx) // starts the browser
	})
	if chrome.err != nil {
		t.Fatalf("start Chromium (%s): %v", path, chrome.err)
	}
	ctx, cancel := chromedp.NewContext(chrome.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// A deadline for the whole test, never a measure of it.
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	return ctx
}

// In a real browser: an approver signs in through the dev issuer's page, a
// DELETE that the agent sends meanwhile is held and appears on the page
// without a reload, and a click on approve releases it to the upstream.
func TestApproveInChromium(t *testing.T) {
	stacktest.ForEachDataPlane(t, func(t *testing.T, dp stack.DataPlane) {
		ctx := tab(t)
		f := stacktest.Start(t, dp, stacktest.Options{Extra: `policy:
  bundle: builtin:default
approvals:
  mode: hold
  hold: 2m
dev:
  issuer: true
`})
		agent, _, err := f.CP.DevIssuer.Mint(devissuer.Claims{Subject: "nightly-etl", Groups: []string{"customers-writers"}})
		if err != nil {
			t.Fatal(err)
		}
		base := controlplane.HTTPBase(f.CP.HTTPAddr)
		problems := watchConsole(ctx)

		// Sign in: /ui/approvals → /ui/login → the dev issuer's page → back.
		if err := chromedp.Do(ctx,
			chromedp.Navigate(base+"/ui/approvals"),
			chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)),
			chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), "dana"),
			chromedp.SendKeys(chromedp.CSS(`input[name="groups"]`), "custos-approvers"),
			chromedp.SendKeys(chromedp.CSS(`input[name="secret"]`), f.CP.DevIssuer.Secret()),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.ID("list")),
		); err != nil {
			t.Fatalf("sign in: %v%s", err, page(ctx))
		}
		empty, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("list")))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(empty, "No pending request") {
			t.Fatalf("before any request the list shows %q", empty)
		}

		// The agent's DELETE is held until a vote.
		before := f.Upstream.Count()
		type result struct {
			status int
			err    error
		}
		done := make(chan result, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "DELETE", f.URL+"/customers/1", nil)
			req.Header.Set("authorization", "Bearer "+agent)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- result{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			done <- result{status: resp.StatusCode}
		}()

		// It appears without a reload, in full, and the approver approves it.
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`article[data-approval-id] button.approve`))); err != nil {
			t.Fatalf("the held request never appeared: %v%s", err, page(ctx))
		}
		card, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`article[data-approval-id]`)))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"DELETE", "nightly-etl", "customers", "custos-approvers", "left"} {
			if !strings.Contains(card, want) {
				t.Errorf("the request's card lacks %q:\n%s", want, card)
			}
		}
		if n := f.Upstream.Count(); n != before {
			t.Fatal("the held request reached the upstream before its approval")
		}
		if err := chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.CSS(`article[data-approval-id] textarea`), "ok for the cleanup"),
			chromedp.Click(chromedp.CSS(`article[data-approval-id] button.approve`)),
			chromedp.WaitVisible(chromedp.ID("flash")),
		); err != nil {
			t.Fatalf("approve: %v%s", err, page(ctx))
		}
		flash, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("flash")))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(flash, "Approved ") {
			t.Fatalf("after the click the page says %q", flash)
		}
		if p := problems(); len(p) > 0 {
			t.Errorf("the browser reported:\n%s", strings.Join(p, "\n"))
		}

		select {
		case r := <-done:
			// The demo upstream answers DELETE with 405: it was reached.
			if r.err != nil || r.status != http.StatusMethodNotAllowed || f.Upstream.Count() != before+1 {
				t.Fatalf("the approved request: %d %v (upstream saw %d)", r.status, r.err, f.Upstream.Count()-before)
			}
		case <-ctx.Done():
			t.Fatal("the approved request was never released")
		}
	})
}

// watchConsole collects what the tab reports that the page should never
// cause: uncaught exceptions and security errors (a Content-Security-Policy
// that blocks the page's own style or script).
func watchConsole(ctx context.Context) func() []string {
	var mu sync.Mutex
	var got []string
	// The tab first, here: Console and the test's first Run would each
	// create it, racing on the context.
	if err := chromedp.Do(ctx); err != nil {
		return func() []string { return []string{"no tab: " + err.Error()} }
	}
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			if m.IsException() || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
				mu.Lock()
				got = append(got, m.String())
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// page is the tab's URL and text for a failure message. The dev issuer's
// page never shows the secret typed into it.
func page(ctx context.Context) string {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u, err := chromedp.Run(c, chromedp.Location())
	if err != nil {
		return ""
	}
	text, err := chromedp.Run(c, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		return ""
	}
	return fmt.Sprintf("\nat %s:\n%s", u, text)
}
