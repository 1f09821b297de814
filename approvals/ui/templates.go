package ui

import (
	"embed"
	"html/template"
	"strings"
)

//go:embed page.html
var files embed.FS

// templates are the page ("page"), its list ("list", also what the page
// polls), a one-message page ("message") and the page that ends a sign-in
// ("continue").
var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"join": strings.Join,
}).ParseFS(files, "page.html"))

// pageData is what the templates show.
type pageData struct {
	Title string
	// Nonce allows the inline style and script of one response.
	Nonce string
	// Heading and Text are a message page's.
	Heading, Text string
	// Refresh sends the browser on to the approvals page.
	Refresh bool

	// Who is the signed-in approver, Human whether they may vote at all.
	Who   string
	Human bool
	// CSRF is the session's token, in every form.
	CSRF  string
	Flash *flash
	Items []item
	// Version identifies the list, PollMillis how often it is asked for.
	Version    string
	PollMillis int
}
