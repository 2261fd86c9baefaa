package webui

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// ringDirectory is alpha (this node), bravo, charlie and delta linked in a
// ring, each listing both its neighbours.
func ringDirectory(now time.Time) []mesh.Record {
	return []mesh.Record{
		fakeRecord("alpha", now, map[string]string{"chat": `{"channels":["general","music"]}`}, "bravo", "delta"),
		fakeRecord("bravo", now.Add(-40*time.Second), map[string]string{
			"music": `{"tracks":128,"artists":{"n":9}}`,
			"files": `7`,
		}, "alpha", "charlie"),
		fakeRecord("charlie", now.Add(-3*time.Minute), map[string]string{"files": `{"shared":3,"seeding":true}`}, "bravo", "delta"),
		fakeRecord("delta", now.Add(-2*time.Second), nil, "charlie", "alpha"),
	}
}

// openMesh switches the page to the Mesh view and waits until it has drawn
// nodes nodes and the layout has settled.
func openMesh(t *testing.T, ctx context.Context, nodes int) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(`.nav-link[data-view="mesh"]`, chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, 20*time.Second, fmt.Sprintf(`document.querySelectorAll("#mesh-graph .mesh-node").length === %d
		&& document.querySelector("#mesh-graph").dataset.state === "settled"`, nodes))
}

// nodePositions returns the drawn position of every node, by ID.
func nodePositions(t *testing.T, ctx context.Context) map[string][2]float64 {
	t.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries(
		[...document.querySelectorAll("#mesh-graph .mesh-node")].map((g) => [g.dataset.id, g.getAttribute("transform")]))`))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]float64{}
	for id, tr := range raw {
		var x, y float64
		if _, err := fmt.Sscanf(tr, "translate(%g %g)", &x, &y); err != nil {
			t.Fatalf("node %s: transform %q: %v", id, tr, err)
		}
		out[id] = [2]float64{x, y}
	}
	return out
}

// TestBrowserMesh shows a ring of four nodes, then a fifth that joins.
func TestBrowserMesh(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	node.add(fakePeer("bravo", 9*time.Millisecond, true, time.Now()))
	node.add(fakePeer("delta", 30*time.Millisecond, false, time.Now()))
	node.setRecords(ringDirectory(time.Now())...)
	ctx, _ := browserPage(t, node, "en-US")
	const wait = 10 * time.Second

	openMesh(t, ctx, 4)
	byID := func(name string) string {
		return `document.querySelector('#mesh-graph .mesh-node[data-id="` + string(fakeID(name)) + `"]')`
	}
	browsertest.Until(t, ctx, wait, `document.querySelector(".view-head h1").textContent === "Mesh"
		&& document.querySelector('.nav-link[data-view="mesh"]').getAttribute("aria-current") === "page"
		&& document.querySelector("#mesh-count").textContent === "4 nodes online · 4 links"`)
	// Four links, each drawn once although both ends list it, none dashed.
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#mesh-graph .mesh-edge").length === 4
		&& document.querySelectorAll("#mesh-graph .mesh-edge.one-way").length === 0`)
	browsertest.Until(t, ctx, wait, byID("alpha")+`.classList.contains("self")
		&& `+byID("bravo")+`.classList.contains("peer") && `+byID("delta")+`.classList.contains("peer")
		&& `+byID("charlie")+`.classList.contains("other")
		&& document.querySelectorAll("#mesh-graph .mesh-node.self").length === 1
		&& `+byID("charlie")+`.textContent === "charlie"`)
	// The devices list: names, link counts, resources summarised.
	bravoRow := `document.querySelector('#mesh-devices tr[data-id="` + string(fakeID("bravo")) + `"]')`
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#mesh-devices tbody tr").length === 4
		&& [...document.querySelectorAll("#mesh-devices tbody tr")].map((tr) => tr.querySelector(".peer-name").textContent).join(",") === "alphayou,bravo,charlie,delta"
		&& `+bravoRow+`.cells[2].textContent === "2"
		&& `+bravoRow+`.cells[3].textContent.includes("music")
		&& `+bravoRow+`.cells[3].textContent.includes("tracks: 128")
		&& `+bravoRow+`.cells[3].textContent.includes("artists: {…}")
		&& document.querySelector('#mesh-devices tr[data-id="`+string(fakeID("charlie"))+`"]').cells[4].textContent === "3 minutes ago"
		&& document.querySelector('#mesh-devices tr[data-id="`+string(fakeID("alpha"))+`"]').cells[3].textContent.includes("channels: general, music")
		&& document.querySelector('#mesh-devices tr[data-id="`+string(fakeID("delta"))+`"]').cells[3].textContent === "Nothing advertised"`)
	// No relayed link yet: no relayed mark, no relay line. Then the link
	// to delta turns out relayed (TURN) and carries 3/4 of the bytes.
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#mesh-graph .mesh-edge.relayed").length === 0
		&& document.querySelector("#mesh-relayed").hidden`)
	bravo := fakePeer("bravo", 9*time.Millisecond, true, time.Now())
	bravo.BytesIn, bravo.BytesOut = 100, 100
	delta := fakePeer("delta", 30*time.Millisecond, false, time.Now())
	delta.Route, delta.Relayed, delta.BytesIn, delta.BytesOut = mesh.RouteTURN, true, 500, 100
	node.add(bravo)
	node.add(delta)
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#mesh-graph .mesh-edge.relayed.route-turn").length === 1
		&& document.querySelector('#mesh-graph .mesh-edge.relayed').dataset.a + document.querySelector('#mesh-graph .mesh-edge.relayed').dataset.b
			=== [`+"`"+string(fakeID("alpha"))+"`, `"+string(fakeID("delta"))+"`"+`].sort().join("")
		&& !document.querySelector("#mesh-relayed").hidden
		&& document.querySelector("#mesh-relayed").dataset.share === "75"
		&& document.querySelector("#mesh-relayed").textContent === "1 of this node's 2 links go through a relay: 75% of its traffic (600 B)"`)

	// The graph is laid out: no two nodes on top of each other, links of
	// about the same length.
	before := nodePositions(t, ctx)
	checkSpread(t, before, 30)
	screenshot(t, ctx, "mesh-ring-en")

	// Clicking a node shows its details.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](byID("charlie")+`.dispatchEvent(new MouseEvent("click", {bubbles: true}))`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector("#mesh-detail .detail-name").textContent === "charlie"
		&& document.querySelector("#mesh-detail-links").textContent === "2 links"
		&& document.querySelector("#mesh-detail").textContent.includes("shared: 3, seeding: yes")
		&& `+byID("charlie")+`.classList.contains("selected")
		&& document.querySelectorAll("#mesh-graph .mesh-edge.hl").length === 2`)
	screenshot(t, ctx, "mesh-ring-selected-en")

	// A fifth node joins, listing delta; delta's record is not updated yet,
	// so the link is one-sided. It appears live; the others stay put.
	node.setRecords(fakeRecord("echo", time.Now(), map[string]string{"relay": `true`}, "delta"))
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#mesh-graph .mesh-node").length === 5
		&& document.querySelectorAll("#mesh-graph .mesh-edge").length === 5
		&& document.querySelectorAll("#mesh-graph .mesh-edge.one-way").length === 1
		&& document.querySelectorAll("#mesh-devices tbody tr").length === 5
		&& document.querySelector("#mesh-count").textContent === "5 nodes online · 5 links"
		&& `+byID("echo")+`.classList.contains("other")`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#mesh-graph").dataset.state === "settled"`)
	after := nodePositions(t, ctx)
	checkSpread(t, after, 30)
	for id, p := range before {
		if d := math.Hypot(after[id][0]-p[0], after[id][1]-p[1]); d > 25 {
			t.Errorf("node %s moved %.0f units when echo joined, want a small move", id[:8], d)
		}
	}
	// echo starts next to delta, its neighbour.
	e, d := after[string(fakeID("echo"))], after[string(fakeID("delta"))]
	if dist := math.Hypot(e[0]-d[0], e[1]-d[1]); dist > 140 {
		t.Errorf("echo is %.0f units from delta, its only neighbour", dist)
	}
	screenshot(t, ctx, "mesh-joined-en")

	// The other end confirms: the link becomes solid. charlie leaves.
	node.setRecords(fakeRecord("delta", time.Now(), nil, "charlie", "alpha", "echo"))
	node.removeRecord(fakeID("charlie"))
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#mesh-graph .mesh-node").length === 4
		&& document.querySelectorAll("#mesh-graph .mesh-edge").length === 3
		&& document.querySelectorAll("#mesh-graph .mesh-edge.one-way").length === 0
		&& `+byID("charlie")+` === null`)
	// charlie was selected; the details fall back to the hint.
	browsertest.Until(t, ctx, wait, `document.querySelector("#mesh-detail .detail-name") === null`)

	if *screenshotDir != "" {
		node.setRecords(ringDirectory(time.Now())...)
		browsertest.Until(t, ctx, wait, `document.querySelector("#mesh-graph").dataset.state === "settled"
			&& document.querySelectorAll("#mesh-graph .mesh-node").length === 5`)
		if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](byID("bravo")+`.dispatchEvent(new MouseEvent("click", {bubbles: true}))`)); err != nil {
			t.Fatal(err)
		}
		screenshot(t, ctx, "mesh-en-dark")
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844)); err != nil {
			t.Fatal(err)
		}
		browsertest.Until(t, ctx, wait, `document.querySelector("#mesh-graph").clientWidth < 390`)
		screenshot(t, ctx, "mesh-en-dark-narrow")
	}
}

// checkSpread fails the test if two nodes are closer than min units.
func checkSpread(t *testing.T, pos map[string][2]float64, min float64) {
	t.Helper()
	for a, p := range pos {
		for b, q := range pos {
			if a < b && math.Hypot(p[0]-q[0], p[1]-q[1]) < min {
				t.Errorf("nodes %s and %s are %.0f units apart, want at least %.0f", a[:8], b[:8], math.Hypot(p[0]-q[0], p[1]-q[1]), min)
			}
		}
	}
}

// TestBrowserMeshStates covers the empty directory, a lone node, and
// Chinese.
func TestBrowserMeshStates(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("猫窝")
	ctx, _ := browserPage(t, node, "zh-CN")
	const wait = 10 * time.Second

	if err := chromedp.Do(ctx, chromedp.Click(`.nav-link[data-view="mesh"]`, chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector(".view-head h1").textContent === "网络拓扑"
		&& document.querySelector('.nav-link[data-view="mesh"]').textContent === "网络"
		&& document.querySelector("#mesh-empty").textContent.includes("目录中还没有节点")
		&& document.querySelector(".mesh-content").hidden`)

	node.setRecords(fakeRecord("猫窝", time.Now(), map[string]string{"聊天": `{"频道":["闲聊"]}`}))
	browsertest.Until(t, ctx, wait, `document.querySelector("#mesh-empty").hidden
		&& !document.querySelector("#mesh-alone").hidden
		&& document.querySelector("#mesh-alone").textContent.startsWith("目前只有本节点在线")
		&& document.querySelectorAll("#mesh-graph .mesh-node.self").length === 1
		&& document.querySelector("#mesh-devices th").textContent === "名称"
		&& document.querySelector("#mesh-devices tbody").textContent.includes("频道: 闲聊")`)
	screenshot(t, ctx, "mesh-alone-zh")

	node.setRecords(ringDirectory(time.Now())...)
	node.setRecords(fakeRecord("猫窝", time.Now(), map[string]string{"聊天": `{"频道":["闲聊"]}`}, "bravo"))
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#mesh-graph .mesh-node").length === 5
		&& document.querySelector("#mesh-alone").hidden
		&& document.querySelector("#mesh-count").textContent === "5 个节点在线 · 5 条连接"`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#mesh-graph").dataset.state === "settled"`)
	screenshot(t, ctx, "mesh-zh")
}

// randomMesh is n nodes, alpha (this node) and node-1 … node-(n-1), each
// linked to about four others at random. Both ends list a link, except for
// every tenth, which only one end lists.
func randomMesh(n int, now time.Time) []mesh.Record {
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	names := []string{"alpha"}
	for i := 1; i < n; i++ {
		names = append(names, "node-"+strconv.Itoa(i))
	}
	lists := make([][]string, n)
	links := 0
	for i := range n {
		for range 2 {
			j := rng.IntN(n)
			if j == i {
				continue
			}
			lists[i] = append(lists[i], names[j])
			if links++; links%10 != 0 {
				lists[j] = append(lists[j], names[i])
			}
		}
	}
	recs := make([]mesh.Record, n)
	for i, name := range names {
		res := map[string]string{"chat": fmt.Sprintf(`{"channels":%d}`, rng.IntN(5))}
		recs[i] = fakeRecord(name, now.Add(-time.Duration(rng.IntN(120))*time.Second), res, lists[i]...)
	}
	return recs
}

// TestBrowserMeshLarge draws meshes of 30 and 500 nodes: every node is
// drawn, the layout ends, and the page answers while it runs.
func TestBrowserMeshLarge(t *testing.T) {
	checkGoroutines(t)
	for _, n := range []int{30, 500} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			node := newFakeNode("alpha")
			node.setRecords(randomMesh(n, time.Now())...)
			ctx, _ := browserPage(t, node, "en-US")
			if err := chromedp.Do(ctx, chromedp.Click(`.nav-link[data-view="mesh"]`, chromedp.NodeVisible)); err != nil {
				t.Fatal(err)
			}
			browsertest.Until(t, ctx, 20*time.Second, fmt.Sprintf(`document.querySelectorAll("#mesh-graph .mesh-node").length === %d`, n))
			// While the layout runs, the page still handles input.
			browsertest.Until(t, ctx, 20*time.Second, `document.querySelector("#mesh-graph").dataset.state !== undefined`)
			browsertest.Until(t, ctx, 60*time.Second, `document.querySelector("#mesh-graph").dataset.state === "settled"`)
			pos := nodePositions(t, ctx)
			if len(pos) != n {
				t.Fatalf("%d positions, want %d", len(pos), n)
			}
			for id, p := range pos {
				if math.IsNaN(p[0]) || math.IsNaN(p[1]) {
					t.Fatalf("node %s at %v", id, p)
				}
			}
			if n <= 50 {
				checkSpread(t, pos, 20)
			}
			screenshotViewport(t, ctx, "mesh-"+strconv.Itoa(n)+"-en")
		})
	}
}
