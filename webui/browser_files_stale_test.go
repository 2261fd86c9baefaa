package webui

import (
	"context"
	"testing"
	"time"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// The Files view reads state with GETs and follows it with events. Each
// test here holds one GET on the server until an event newer than its
// answer is shown, then lets it go: the view must keep what the event
// said.

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

// TestBrowserFilesTransfersHeldGET: the view's first read of the
// transfers is on its way while one download finishes, one is cancelled
// and one starts. Its answer, older than all three events, must not undo
// them.
func TestBrowserFilesTransfersHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"})
	files := newFakeFiles(node.id)
	finishing := files.addRemote("finishing.bin", make([]byte, 1<<20), bravo)
	cancelled := files.addRemote("cancelled.bin", []byte("cancelled"), bravo)
	later := files.addRemote("later.bin", []byte("later"), bravo)
	startDownload(t, files, finishing, finishing.Size/2, map[mesh.ID]int64{bravo: finishing.Size / 2})
	startDownload(t, files, cancelled, 1, map[mesh.ID]int64{bravo: 1})
	ctx, holds := filesPageHolding(t, node, Config{Files: files}, "en-US", true, "/api/shards")
	const wait = 10 * time.Second
	holds["/api/shards"].wait(t, wait)

	row := func(f shards.File) string {
		return `document.querySelector('#files-transfers li[data-id="` + f.ID.String() + `"]')`
	}
	files.advance(finishing.ID, finishing.Size, 0, map[mesh.ID]int64{bravo: finishing.Size})
	if err := files.Remove(context.Background(), cancelled.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := files.Fetch(context.Background(), shards.Link{ID: later.ID}); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, row(finishing)+`?.dataset.state === "done" && `+row(later)+`?.dataset.state === "downloading"`)
	holds["/api/shards"].letGoAndWait(t, ctx, "readTransfers", wait)
	checkJS(t, ctx, row(finishing)+`?.dataset.state === "done"`, "the first read of the transfers took a finished download back to downloading")
	checkJS(t, ctx, row(cancelled)+` === null`, "the first read of the transfers put back a cancelled download")
	checkJS(t, ctx, row(later)+`?.dataset.state === "downloading"`, "the first read of the transfers dropped a download begun while it was on its way")
}

// TestBrowserFilesDirectoryHeldGET: the view's first read of the
// directory is on its way when a node comes online. Its answer, without
// that node, must not take the node's name away.
func TestBrowserFilesDirectoryHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo, charlie := fakeID("bravo"), fakeID("charlie")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"})
	files := newFakeFiles(node.id)
	f := files.addRemote("song.flac", make([]byte, 1<<20), charlie)
	startDownload(t, files, f, f.Size/2, map[mesh.ID]int64{charlie: f.Size / 2})
	ctx, holds := filesPageHolding(t, node, Config{Files: files}, "en-US", true, "/api/directory")
	const wait = 10 * time.Second
	holds["/api/directory"].wait(t, wait) // it has read alpha and bravo

	legend := `document.querySelector('#files-transfers li[data-id="` + f.ID.String() + `"] .sources-legend')?.textContent`
	node.setRecords(mesh.Record{ID: charlie, Name: "charlie"})
	browsertest.Until(t, ctx, wait, legend+` === "charlie 100%"`)
	holds["/api/directory"].letGoAndWait(t, ctx, "readDirectory", wait)
	checkJS(t, ctx, legend+` === "charlie 100%"`,
		"the first read of the directory, older than the event that brought charlie, took charlie's name away")
}

// TestBrowserFilesListHeldGET: the view's first read of the file list is
// on its way when a file is shared; the event makes it read the list
// again, and that answer comes first. The older one, coming last, must not
// take the new file away.
func TestBrowserFilesListHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"})
	files := newFakeFiles(node.id)
	files.addRemote("old.txt", []byte("old"), bravo)
	ctx, holds := filesPageHolding(t, node, Config{Files: files}, "en-US", true, "/api/files")
	const wait = 10 * time.Second
	holds["/api/files"].wait(t, wait) // it has read one file

	files.addRemote("new.txt", []byte("new"), bravo)
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-count")?.textContent === "2 files online"`)
	holds["/api/files"].letGoAndWait(t, ctx, "readFiles", wait)
	checkJS(t, ctx, `document.querySelector("#files-count").textContent === "2 files online"
		&& document.querySelectorAll("#files-table tbody tr").length === 2`,
		"the first read of the file list, answered before a file was shared and read after the next read, took the file away")
}

// TestBrowserReadCountsPerView: the counts of a view's reads that the
// held-GET tests wait for start again when another view mounts. Mesh and
// Files both count their directory reads: with Mesh's read counted for
// Files, letGoAndWait would return before Files had read the held answer.
func TestBrowserReadCountsPerView(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"})
	ctx, holds := holdingPage(t, node, Config{Files: newFakeFiles(node.id)}, "en-US", "mesh", false, "/api/directory")
	const wait = 10 * time.Second
	held := holds["/api/directory"]
	browsertest.Until(t, ctx, wait, viewRead("readDirectory")+` === "1"`)
	held.arm()
	click(t, ctx, `.nav-link[data-view="files"]`)
	held.wait(t, wait)
	checkJS(t, ctx, viewRead("readDirectory")+` === undefined`, "the Files view starts with the Mesh view's count of directory reads")
	held.letGoAndWait(t, ctx, "readDirectory", wait)
	checkJS(t, ctx, viewRead("readDirectory")+` === "1"`, "the Files view read the directory other than once")
}
