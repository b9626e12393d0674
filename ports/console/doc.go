// Package console is the operations console of `catalog serve`: server-rendered pages on
// their own listener (CONSOLE_ADDR) that show the pipeline at a glance and let an operator
// start, watch and cancel rebuilds, roll the alias back, prune indices, replay and resolve
// dead letters and run a verify from a browser.
//
// It is a port like the gRPC admin port and calls the same application use cases
// (application/ops, application/rebuild); it holds no logic of its own beyond presenting
// them. Every page and asset is embedded in the binary (html/template, embed.FS): nothing is
// fetched from elsewhere, so it works offline and under a Content-Security-Policy without
// 'unsafe-inline'.
//
// Security: a login with the admin token (ports/adminauth compares it) creates a server-side
// session whose random id is the cookie (HttpOnly, SameSite=Strict, Secure over TLS); the
// token itself is never stored in the browser. Every POST is refused with 403 when the
// browser says it is cross-site (Sec-Fetch-Site, Origin) or when it lacks the session's
// anti-forgery token.
package console
