package webui

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
)

// TestBrowserFreshness checks freshness() in dom.js on its own, in the
// page: which answers may be shown after which reads and events.
func TestBrowserFreshness(t *testing.T) {
	checkGoroutines(t)
	base := startServer(t, Config{Version: "test"}, newFakeNode("alpha"))
	ctx := browsertest.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	// Each case is the body of a function of f, a new freshness(), that
	// returns what it found, as a string, to compare with want.
	for _, c := range []struct{ name, body, want string }{
		{"later read answers first", `const a = f.begin(), b = f.begin(); return [b.fresh(), a.fresh()];`, "true,false"},
		{"earlier read answers first", `const a = f.begin(), b = f.begin(); return [a.fresh(), b.fresh()];`, "true,true"},
		{"event on the way", `const a = f.begin(); f.touch(); return [a.fresh()];`, "false"},
		{"event before the read", `f.touch(); const a = f.begin(); return [a.fresh()];`, "true"},
		{"event after both began", `const a = f.begin(), b = f.begin(); f.touch(); return [b.fresh(), a.fresh()];`, "false,false"},
		{"asked twice", `const a = f.begin(); return [a.fresh(), a.fresh()];`, "true,true"},
		{"stale stays stale", `const a = f.begin(), b = f.begin(); b.fresh(); f.begin(); return [a.fresh(), a.fresh()];`, "false,false"},
		{"item touched on the way", `const a = f.begin(); f.touch('x'); return [a.fresh(), a.changed('x'), a.changed('y')];`, "true,true,false"},
		{"item touched before the read", `f.touch('x'); const a = f.begin(); return [a.changed('x')];`, "false"},
		{"item touched between reads", `const a = f.begin(); f.touch('x'); const b = f.begin(); return [a.changed('x'), b.changed('x')];`, "true,false"},
		{"another freshness", `const a = f.begin(); freshness().touch(); return [a.fresh()];`, "true"},
	} {
		t.Run(c.name, func(t *testing.T) {
			js := `import("./dom.js").then(({ freshness }) => {
				const f = freshness();
				return String((() => {` + c.body + `})());
			})`
			got, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %s, want %s", got, c.want)
			}
		})
	}
}
