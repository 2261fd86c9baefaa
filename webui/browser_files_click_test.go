package webui

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// center returns the middle of the element sel in the window, scrolled
// into view.
func center(t *testing.T, ctx context.Context, sel string) (x, y float64) {
	t.Helper()
	browsertest.Until(t, ctx, 20*time.Second, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	pt, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		el.scrollIntoView({ block: "nearest" });
		const r = el.getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2];
	})()`, sel)))
	if err != nil {
		t.Fatalf("%s: %v", sel, err)
	}
	return pt[0], pt[1]
}

// press presses the left button on sel and returns a func that releases
// it on sel where it is then (a row added above moves it: the hand
// follows, so that only the redraw can lose the click).
func press(t *testing.T, ctx context.Context, sel string) (release func()) {
	t.Helper()
	x, y := center(t, ctx, sel)
	if err := chromedp.Do(ctx, chromedp.MouseEvent(chromedp.MouseMoved, x, y),
		chromedp.MouseEvent(chromedp.MousePressed, x, y, chromedp.ButtonLeft, chromedp.ClickCount(1))); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		x, y := center(t, ctx, sel)
		if err := chromedp.Do(ctx, chromedp.MouseEvent(chromedp.MouseMoved, x, y, chromedp.ButtonLeft),
			chromedp.MouseEvent(chromedp.MouseReleased, x, y, chromedp.ButtonLeft, chromedp.ClickCount(1))); err != nil {
			t.Fatal(err)
		}
	}
}

// watchRows records in window.touched the data-id of every row of the
// list sel whose subtree changes, or "list" for a change of the list's
// own children; touched returns them, and "replaced" if sel is another
// element now.
func watchRows(t *testing.T, ctx context.Context, sel, row string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		window.touched = new Set();
		const list = document.querySelector(%q);
		window.watched = [list, %[1]q];
		new MutationObserver((recs) => {
			for (const r of recs) {
				const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
				const tr = el === list ? null : el.closest(%q);
				window.touched.add(tr ? tr.dataset.id : "list");
			}
		}).observe(list, { subtree: true, childList: true, attributes: true, characterData: true });
		return true;
	})()`, sel, row))); err != nil {
		t.Fatal(err)
	}
}

func touched(t *testing.T, ctx context.Context) []string {
	t.Helper()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...window.touched,
		...(document.querySelector(window.watched[1]) === window.watched[0] ? [] : ["replaced"])].sort()`))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestBrowserFilesClickDuringEvents: with 20,000 files online, the user
// presses "Download" on a row of the table, and before the button comes
// up, events change other rows (a download finishes, one starts, a file
// is shared); then presses "Pause" on a download while its progress comes
// and other downloads start and are cancelled. Both clicks must take
// effect, and an event must touch only the rows it changes: a view that
// redrew its table lost them.
func TestBrowserFilesClickDuringEvents(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"})
	files := newFakeFiles(node.id)
	const many = 20000
	for i := range many {
		files.addRemote(fmt.Sprintf("doc-%05d.txt", i), []byte(fmt.Sprintf("text %d", i)), bravo)
	}
	target := files.addRemote("aaa-target.txt", []byte("target"), bravo)
	finishing := files.addRemote("aab-finishing.bin", make([]byte, 1<<20), bravo)
	starting := files.addRemote("aac-starting.bin", []byte("starting"), bravo)
	paused := files.addRemote("aad-paused.bin", make([]byte, 2<<20), bravo)
	startDownload(t, files, finishing, 1<<19, map[mesh.ID]int64{bravo: 1 << 19})
	startDownload(t, files, paused, 1<<19, map[mesh.ID]int64{bravo: 1 << 19})
	total := many + 4
	ctx := filesPage(t, node, Config{Files: files}, "en-US")
	const wait = 30 * time.Second
	row := func(f shards.File) string {
		return `document.querySelector('#files-transfers li[data-id="` + f.ID.String() + `"]')`
	}
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`document.querySelector("#files-count")?.textContent === "%d files online"
		&& document.querySelectorAll("#files-table tbody tr").length === 500
		&& %s?.dataset.state === "downloading"`, total, row(paused)))

	// The table: Download pressed, events, released.
	watchRows(t, ctx, "#files-table tbody", "tr")
	release := press(t, ctx, `#files-table button[data-act="fetch"][data-id="`+target.ID.String()+`"]`)
	files.advance(finishing.ID, finishing.Size, 0, map[mesh.ID]int64{bravo: finishing.Size})
	if _, err := files.Fetch(context.Background(), shards.Link{ID: starting.ID}); err != nil {
		t.Fatal(err)
	}
	files.addRemote("zzz-new.txt", []byte("new"), bravo)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`document.querySelector("#files-count").textContent === "%d files online"
		&& %s?.dataset.state === "done" && %s?.dataset.state === "downloading"
		&& document.querySelector('#files-table tr[data-id="%s"] .badge')?.dataset.state === "done"`,
		total+1, row(finishing), row(starting), finishing.ID))
	if got, want := touched(t, ctx), []string{finishing.ID.String(), starting.ID.String()}; !slices.Equal(got, sorted(want)) {
		t.Errorf("the events changed the table's rows %q, want only %q (the rows whose state changed)", got, want)
	}
	release()
	testutil.WaitFor(t, wait, "the download pressed during the events to start", func() bool {
		_, ok := files.transfer(target.ID)
		return ok
	})

	// The transfers: Pause pressed, events, released.
	browsertest.Until(t, ctx, wait, row(target)+`?.dataset.state === "downloading"`)
	watchRows(t, ctx, "#files-transfers", "li")
	release = press(t, ctx, `#files-transfers button[data-act="pause"][data-id="`+paused.ID.String()+`"]`)
	files.advance(paused.ID, 1<<20, 1<<20, map[mesh.ID]int64{bravo: 1 << 20})
	other := files.addRemote("aae-other.bin", []byte("other"), bravo)
	if _, err := files.Fetch(context.Background(), shards.Link{ID: other.ID}); err != nil {
		t.Fatal(err)
	}
	if err := files.Remove(context.Background(), starting.ID); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, row(paused)+`.querySelector(".progress").getAttribute("aria-valuenow") === "50"
		&& `+row(other)+` !== null && `+row(starting)+` === null`)
	changed := []string{"list", paused.ID.String(), other.ID.String(), starting.ID.String()}
	for _, id := range touched(t, ctx) {
		if !slices.Contains(changed, id) {
			t.Errorf("the events changed transfer %s, which they did not change (changed: %q)", id, changed)
		}
	}
	release()
	testutil.WaitFor(t, wait, "the download paused during the events to be paused", func() bool {
		tr, _ := files.transfer(paused.ID)
		return tr.State == shards.StatePaused
	})
}

func sorted(s []string) []string {
	slices.Sort(s)
	return s
}

// TestBrowserFilesClickDuringReorder: the table is sorted by holders and
// the user presses "Download" on a row when the file at the top loses its
// holders and goes to the bottom. Only that row may move: a row taken out
// and put back between mousedown and mouseup gets no click, and moving the
// one row down took every row between out and back.
func TestBrowserFilesClickDuringReorder(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo, charlie, dave := fakeID("bravo"), fakeID("charlie"), fakeID("dave")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"},
		mesh.Record{ID: charlie, Name: "charlie"}, mesh.Record{ID: dave, Name: "dave"})
	files := newFakeFiles(node.id)
	topB := []byte("top")
	top := files.addRemote("top.txt", topB, bravo, charlie, dave)
	var target shards.File
	for i := range 300 {
		f := files.addRemote(fmt.Sprintf("mid-%03d.txt", i), []byte(fmt.Sprintf("mid %d", i)), bravo, charlie)
		if i == 150 {
			target = f
		}
	}
	ctx := filesPage(t, node, Config{Files: files}, "en-US")
	const wait = 30 * time.Second
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#files-table tbody tr").length === 301`)
	checkJS(t, ctx, `(() => {
		const s = document.querySelector("#files-sort");
		s.value = "holders";
		s.dispatchEvent(new Event("change"));
		return true;
	})()`, "")
	first := `document.querySelector("#files-table tbody tr").dataset.id`
	browsertest.Until(t, ctx, wait, first+` === "`+top.ID.String()+`"`)

	watchRows(t, ctx, "#files-table tbody", "tr")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		window.moved = new Set();
		new MutationObserver((recs) => {
			for (const r of recs) for (const n of r.removedNodes) if (n.dataset) window.moved.add(n.dataset.id);
		}).observe(document.querySelector("#files-table tbody"), { childList: true });
		return true;
	})()`)); err != nil {
		t.Fatal(err)
	}
	release := press(t, ctx, `#files-table button[data-act="fetch"][data-id="`+target.ID.String()+`"]`)
	files.addRemote("top.txt", topB, bravo) // one holder now: last
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-table tbody tr:last-child").dataset.id === "`+top.ID.String()+`"`)
	moved, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...window.moved]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(moved) != 1 || moved[0] != top.ID.String() {
		t.Errorf("the reorder took %d rows out and put them back, want only the one that moved", len(moved))
	}
	release()
	testutil.WaitFor(t, wait, "the download pressed during the reorder to start", func() bool {
		_, ok := files.transfer(target.ID)
		return ok
	})
}
