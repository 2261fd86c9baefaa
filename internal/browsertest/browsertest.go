package browsertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// Environment variables read by New.
const (
	// EnvChromium names a Chromium binary to use instead of the default paths.
	EnvChromium = "CATNEST_CHROMIUM"
	// EnvRequire, when "1", turns a missing browser into a test failure.
	EnvRequire = "CATNEST_REQUIRE_BROWSER"
)

// DefaultTimeout bounds everything a test does with one browser, so that a
// hung page fails the test instead of hanging it.
const DefaultTimeout = 60 * time.Second

// candidates are the places Chromium is looked for when EnvChromium is unset.
var candidates = []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"}

// Find returns the path of the Chromium binary to use, or an error that says
// what was tried.
func Find() (string, error) {
	if p := os.Getenv(EnvChromium); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("$%s=%q is not an executable file", EnvChromium, p)
	}
	for _, p := range candidates {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("no chromium at $%s or %s", EnvChromium, strings.Join(candidates, ", "))
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// New starts a headless Chromium for t and returns a chromedp context for one
// tab in it. The context ends after DefaultTimeout or shortly before the
// test's deadline, whichever comes first; the browser is closed and its
// profile removed when the test ends.
func New(t testing.TB) context.Context {
	t.Helper()
	return newBrowser(t, DefaultTimeout, nil)
}

// NewFor is New for a test that needs the browser longer than
// DefaultTimeout, such as one that waits for a node to go offline while
// a track plays: its context ends after timeout (or shortly before the
// test's deadline).
func NewFor(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	return newBrowser(t, timeout, nil)
}

// deadline reports the test's deadline when t has one (testing.B has none).
func deadline(t testing.TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}

// Until waits until the JavaScript expression expr is truthy in the page of
// ctx, polling every 50 ms. An expression that throws (say, it reads an
// element that is not there yet) counts as false. After timeout it fails the test, showing expr and
// the start of the page's visible text.
func Until(t testing.TB, ctx context.Context, timeout time.Duration, expr string) {
	t.Helper()
	if err := Wait(ctx, timeout, expr); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		if len(text) > 600 {
			text = text[:600] + "…"
		}
		t.Fatalf("browsertest: waiting for %s: %v\npage text:\n%s", expr, err, text)
	}
}

// Wait is Until for code that is not a test: it returns an error instead of
// failing. A wait does not survive a navigation; start it after the page
// has loaded.
func Wait(ctx context.Context, timeout time.Duration, expr string) error {
	// Poll gives up when the predicate throws; retry instead.
	guarded := "(() => { try { return (" + expr + "\n); } catch (e) { return false; } })()"
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](guarded,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	return err
}

// SetLanguage makes the tab of ctx look like a browser set to the language
// lang (a BCP 47 tag such as "zh-CN" or "en-US"): navigator.language,
// navigator.languages, the Accept-Language header and the Intl locale.
// Call it before navigating; it applies to pages loaded afterwards.
func SetLanguage(ctx context.Context, lang string) error {
	v, err := chromedp.CallBrowser(ctx, browser.GetVersion, cdp.Empty{})
	if err != nil {
		return fmt.Errorf("browsertest: read user agent: %w", err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{
		UserAgent:      v.UserAgent,
		AcceptLanguage: lang,
	}); err != nil {
		return fmt.Errorf("browsertest: set language %q: %w", lang, err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{
		Locale: strings.ReplaceAll(lang, "-", "_"),
	}); err != nil {
		return fmt.Errorf("browsertest: set locale %q: %w", lang, err)
	}
	return nil
}
