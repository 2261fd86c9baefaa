package webui

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

var screenshotDir = flag.String("webui.screenshots", "", "write screenshots of the browser tests to this directory")

// screenshot saves the page as name.png when -webui.screenshots is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	saveScreenshot(t, ctx, name, chromedp.FullScreenshot(100))
}

// screenshotViewport saves what the window shows (not the whole page) as
// name.png when -webui.screenshots is set.
func screenshotViewport(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	saveScreenshot(t, ctx, name, chromedp.CaptureScreenshot())
}

func saveScreenshot(t *testing.T, ctx context.Context, name string, shoot chromedp.Action[[]byte]) {
	t.Helper()
	if *screenshotDir == "" {
		return
	}
	buf, err := chromedp.Run(ctx, shoot)
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.MkdirAll(*screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*screenshotDir, name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// browserPage starts the web UI of node on loopback and a browser that
// speaks lang, and opens the page in it.
func browserPage(t *testing.T, node Node, lang string) (ctx context.Context, stop func()) {
	t.Helper()
	s, err := New(Config{Addr: "127.0.0.1:0", Version: "test"}, node)
	if err != nil {
		t.Fatal(err)
	}
	base, stop := serve(t, s)
	ctx = browsertest.New(t)
	if err := browsertest.SetLanguage(ctx, lang); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	return ctx, stop
}

// TestBrowserPeers loads the UI in Chromium and watches a peer come and go.
func TestBrowserPeers(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	ctx, stop := browserPage(t, node, "en-US")
	const wait = 10 * time.Second

	browsertest.Until(t, ctx, wait, `document.querySelector("#node-name").textContent === "alpha"`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#node-id").textContent === "`+node.id.Short()+`"
		&& document.querySelector("#node-id").title.includes("`+string(node.id)+`")`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#conn").dataset.state === "open"`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#peers-empty") !== null`)
	screenshot(t, ctx, "peers-empty-en")

	node.add(fakePeer("bravo", 12500*time.Microsecond, true, time.Now().Add(-3*time.Minute)))
	node.add(fakePeer("charlie", 180*time.Millisecond, false, time.Now().Add(-2*time.Hour)))
	bravoRow := `document.querySelector('#peers-table tr[data-id="` + string(fakeID("bravo")) + `"]')`
	browsertest.Until(t, ctx, wait, bravoRow+` !== null && `+bravoRow+`.textContent.includes("bravo")`)
	browsertest.Until(t, ctx, wait, bravoRow+`.textContent.includes("12.5 ms")`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#peers-empty") === null
		&& document.querySelectorAll("#peers-table tbody tr").length === 2`)
	screenshot(t, ctx, "peers-en")

	node.remove(fakeID("bravo"))
	browsertest.Until(t, ctx, wait, bravoRow+` === null && document.querySelectorAll("#peers-table tbody tr").length === 1`)
	node.remove(fakeID("charlie"))
	browsertest.Until(t, ctx, wait, `document.querySelector("#peers-empty") !== null`)

	// The indicator shows when the stream is down.
	stop()
	browsertest.Until(t, ctx, wait, `document.querySelector("#conn").dataset.state === "connecting"
		&& !document.querySelector("#offline").hidden`)
	screenshot(t, ctx, "offline-en")
}

// TestBrowserLanguage checks that a Chinese browser gets Chinese and that
// the switch flips to English and is remembered.
func TestBrowserLanguage(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	node.add(fakePeer("bravo", 8*time.Millisecond, true, time.Now().Add(-90*time.Second)))
	node.add(fakePeer("猫窝-二号", 35*time.Millisecond, false, time.Now().Add(-26*time.Hour)))
	ctx, _ := browserPage(t, node, "zh-CN")
	const wait = 10 * time.Second

	browsertest.Until(t, ctx, wait, `document.documentElement.lang === "zh-CN"
		&& document.querySelector(".view-head h1").textContent === "已连接的对等节点"
		&& document.querySelector(".nav-link").textContent === "对等节点"
		&& document.querySelector("#conn-text").textContent === "实时"
		&& document.querySelector("#peers-table th").textContent === "名称"`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#peers-table").textContent.includes("猫窝-二号")`)
	screenshot(t, ctx, "peers-zh")

	if err := chromedp.Do(ctx, chromedp.Click(`#lang button[data-lang="en"]`, chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	english := `document.documentElement.lang === "en"
		&& document.querySelector(".view-head h1").textContent === "Connected peers"
		&& document.querySelector(".nav-link").textContent === "Peers"
		&& document.querySelector("#peers-table th").textContent === "Name"
		&& document.querySelector('#lang button[data-lang="en"]').getAttribute("aria-pressed") === "true"`
	browsertest.Until(t, ctx, wait, english)

	// The choice outlives a reload, although the browser still prefers zh.
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, english)
	browsertest.Until(t, ctx, wait, `document.querySelector("#peers-table") !== null`)
	screenshot(t, ctx, "peers-en-switched")

	if *screenshotDir != "" {
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		}); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "peers-en-dark")
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844),
			chromedp.Click(`#lang button[data-lang="zh"]`, chromedp.NodeVisible)); err != nil {
			t.Fatal(err)
		}
		browsertest.Until(t, ctx, wait, `document.documentElement.lang === "zh-CN"`)
		screenshot(t, ctx, "peers-zh-dark-narrow")
	}
}
