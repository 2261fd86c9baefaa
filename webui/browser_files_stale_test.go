package webui

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// The Files view reads state with GETs and follows it with events. Each
// test here holds one GET on the server until an event newer than its
// answer is shown, then lets it go: the view must keep what the event
// said.

// viewRead returns the JS for how many answers of the GET kind what the
// view has read (its root's data-read-* counter).
func viewRead(what string) string {
	return `document.querySelector("#view").dataset.` + what
}

// checkJS fails the test unless the JS expression is true now.
func checkJS(t *testing.T, ctx context.Context, expr, msg string) {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal(msg)
	}
}

// startDownload makes a download of f at have bytes.
func startDownload(t *testing.T, files *fakeFiles, f shards.File, have int64, sources map[mesh.ID]int64) {
	t.Helper()
	if _, err := files.Fetch(context.Background(), shards.Link{ID: f.ID, Name: f.Name, Size: f.Size}); err != nil {
		t.Fatal(err)
	}
	files.advance(f.ID, have, 1<<20, sources)
}

// TestBrowserFilesResumeHeldGET: after resume the view reads the transfer
// again; the download finishes while that GET is on its way. The older
// answer ("downloading") must not take the row back from done.
func TestBrowserFilesResumeHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"})
	files := newFakeFiles(node.id)
	big := files.addRemote("holiday.mkv", make([]byte, 1<<20), bravo)
	startDownload(t, files, big, big.Size*4/10, map[mesh.ID]int64{bravo: big.Size * 4 / 10})
	path := "/api/shards/" + big.ID.String()
	ctx, holds := filesPageHolding(t, node, Config{Files: files}, "en-US", false, path)
	const wait = 10 * time.Second
	row := `document.querySelector('#files-transfers li[data-id="` + big.ID.String() + `"]')`
	browsertest.Until(t, ctx, wait, row+` !== null && `+row+`.dataset.state === "downloading"`)

	click(t, ctx, `#files-transfers button[data-act="pause"][data-id="`+big.ID.String()+`"]`)
	browsertest.Until(t, ctx, wait, row+`.dataset.state === "paused" && `+viewRead("readTransfer")+` === "1"`)

	holds[path].arm()
	click(t, ctx, `#files-transfers button[data-act="resume"][data-id="`+big.ID.String()+`"]`)
	holds[path].wait(t, wait) // it has read "downloading"
	files.advance(big.ID, big.Size, 0, map[mesh.ID]int64{bravo: big.Size})
	browsertest.Until(t, ctx, wait, row+`.dataset.state === "done"`)
	holds[path].letGo()
	browsertest.Until(t, ctx, wait, viewRead("readTransfer")+` === "2"`)
	checkJS(t, ctx, row+`.dataset.state === "done" && `+row+`.querySelector(".progress").getAttribute("aria-valuenow") === "100"`,
		"the GET after resume, answered before the download finished and read after, showed it downloading again")
}
