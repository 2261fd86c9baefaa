package webui

import (
	"testing"
	"time"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// TestBrowserNavClickDuringRender presses the mouse on a nav link, lets
// the nav be drawn again before the button comes up (as it is when a
// probe finds a view available, or the language changes, right as the
// user clicks), and checks that the click still opens the view: the
// links stay the same elements, so the press and the release land on the
// same one. Drawn anew, the click was lost, and a browser test clicking
// Music while the Live and Call views were being found stayed on Peers.
func TestBrowserNavClickDuringRender(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	ctx, _ := browserPage(t, node, "en-US")
	const wait = 10 * time.Second
	browsertest.Until(t, ctx, wait, `document.documentElement.dataset.probed === "true"
		&& document.querySelector('.nav-link[data-view="peers"]') !== null`)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { location.hash = "#/mesh"; return true; })()`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector("#view").dataset.view === "mesh"`)
	// A point near the left edge of the first link: it stays on the link
	// whatever the language makes its width.
	pt, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](`(() => {
		const r = document.querySelector('.nav-link[data-view="peers"]').getBoundingClientRect();
		return [r.x + 4, r.y + r.height / 2];
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	mouse := func(typ input.DispatchMouseEventType) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.MouseEvent(typ, pt[0], pt[1], chromedp.ButtonLeft, chromedp.ClickCount(1))); err != nil {
			t.Fatal(err)
		}
	}
	mouse(chromedp.MousePressed)
	// Switching the language draws the nav again.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		document.querySelector('#lang button[data-lang="zh"]').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector('.nav-link[data-view="peers"]').textContent === "对等节点"`)
	mouse(chromedp.MouseReleased)
	browsertest.Until(t, ctx, wait, `document.querySelector("#view").dataset.view === "peers"
		&& document.querySelector('.nav-link[data-view="peers"]').getAttribute("aria-current") === "page"`)
}
