// Package browsertest lets Go tests in any package drive a real headless
// Chromium through chromedp.
//
// New starts a fresh browser with its own temporary profile for one test and
// stops it when the test ends. When no Chromium is installed the test is
// skipped with a hint how to install it, unless CATNEST_REQUIRE_BROWSER=1 is
// set (CI sets it), in which case the test fails: a browser test must never
// pass silently in CI because the browser is missing.
//
// The browser's console messages and uncaught exceptions are written to the
// test log, so a failing page shows why.
//
// Caveats: each New starts a whole browser (about a second); a test that needs
// several tabs should make child contexts with chromedp.NewContext on the
// returned context. The returned context must not be shared between
// goroutines that run actions at the same time (see chromedp.NewContext).
package browsertest
