package webui

import (
	"context"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
	"github.com/chromedp/chromedp"
)

// filesPage starts the web UI of node with cfg (its Files, and Chat and
// Members for pushes to a channel) on loopback and a browser that speaks
// lang, opens the page and goes to the Files view.
func filesPage(t *testing.T, node Node, cfg Config, lang string) context.Context {
	t.Helper()
	ctx, _ := filesPageHolding(t, node, cfg, lang, false)
	return ctx
}

// filesPageHolding is filesPage with holds (see holdingPage).
func filesPageHolding(t *testing.T, node Node, cfg Config, lang string, armAtOpen bool, paths ...string) (context.Context, map[string]*heldGET) {
	t.Helper()
	return holdingPage(t, node, cfg, lang, "files", armAtOpen, paths...)
}

// TestBrowserFiles walks through the Files view: another node's image in
// the gallery and the viewer, the list with search, a download whose
// progress bar and sources follow the service, pause and resume, sharing a
// file by path, pushing it ("Push to…": the errors for no node picked, a
// channel gone and a channel of no other member, then a push to a
// channel's members whose panel follows it to done) and a bad link.
func TestBrowserFiles(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo, charlie := fakeID("bravo"), fakeID("charlie")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"},
		mesh.Record{ID: charlie, Name: "charlie"})
	files := newFakeFiles(node.id)
	cat := files.addRemote("cat.png", testPNG(t, 64, 48, color.RGBA{200, 120, 60, 255}), bravo)
	files.addRemote("sunset.png", testPNG(t, 80, 40, color.RGBA{40, 60, 180, 255}), bravo, charlie)
	bigB := make([]byte, 10<<20)
	big := files.addRemote("holiday.mkv", bigB, bravo, charlie)
	chat := newFakeChat(node.id)
	for _, name := range []string{"team", "alone", "gone"} {
		chat.addChannel(chatlog.ChannelInfo{ID: "c-" + name, Name: name, Joined: true})
	}
	members := fakeMembers{"c-team": {node.id, bravo, charlie}, "c-alone": {node.id}}
	ctx := filesPage(t, node, Config{Files: files, Chat: chat, Members: members}, "en-US")
	const wait = 10 * time.Second

	// The gallery shows bravo's image, loaded from the content endpoint.
	tile := `document.querySelector('#files-gallery .tile[data-id="` + cat.ID.String() + `"]')`
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-title").textContent === "Files"
		&& document.querySelectorAll("#files-gallery .tile").length === 2
		&& `+tile+`.classList.contains("loaded")
		&& `+tile+`.querySelector("img").naturalWidth === 64
		&& `+tile+`.querySelector(".tile-name").textContent === "cat.png"
		&& `+tile+`.querySelector(".tile-meta").textContent.includes("1 holder")`)
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#files-table tbody tr").length === 3
		&& document.querySelector("#files-count").textContent === "3 files online"`)
	screenshot(t, ctx, "files-en")

	// The full-size viewer; Escape closes it.
	click(t, ctx, `#files-gallery .tile[data-id="`+cat.ID.String()+`"] .tile-open`)
	browsertest.Until(t, ctx, wait, `!document.querySelector("#files-viewer").hidden
		&& document.querySelector("#files-viewer-img").naturalWidth === 64
		&& document.querySelector("#files-viewer-name").textContent.startsWith("cat.png")`)
	screenshotViewport(t, ctx, "files-viewer-en")
	click(t, ctx, "#files-viewer-next")
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-viewer-img").naturalWidth === 80`)
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\x1b")); err != nil { // Escape
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-viewer").hidden`)

	// Search narrows the list.
	if err := chromedp.Do(ctx, chromedp.SendKeys("#files-search", "holi")); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#files-table tbody tr").length === 1
		&& document.querySelector("#files-table tbody tr").dataset.id === "`+big.ID.String()+`"
		&& document.querySelector("#files-gallery").hidden`)

	// Download: the progress bar, rate, ETA and sources follow the service.
	click(t, ctx, `#files-table button[data-act="fetch"][data-id="`+big.ID.String()+`"]`)
	row := `document.querySelector('#files-transfers li[data-id="` + big.ID.String() + `"]')`
	fill := row + `.querySelector(".progress-fill").style.width`
	browsertest.Until(t, ctx, wait, row+` !== null && `+row+`.dataset.state === "downloading" && `+fill+` === "0%"`)
	files.advance(big.ID, big.Size/4, 2<<20, map[mesh.ID]int64{bravo: big.Size / 4})
	browsertest.Until(t, ctx, wait, fill+` === "25%"
		&& `+row+`.querySelector(".progress").getAttribute("aria-valuenow") === "25"
		&& `+row+`.querySelector(".transfer-stats").textContent === "2.5 MiB / 10 MiB · 25% · 2 MiB/s · 4 s left"
		&& `+row+`.querySelectorAll(".source-seg").length === 1
		&& `+row+`.querySelector(".sources-legend").textContent === "bravo 100%"`)
	files.advance(big.ID, big.Size*6/10, 1<<20, map[mesh.ID]int64{bravo: big.Size * 4 / 10, charlie: big.Size * 2 / 10})
	browsertest.Until(t, ctx, wait, fill+` === "60%"
		&& `+row+`.querySelector(".transfer-stats").textContent.includes("60%")
		&& `+row+`.querySelectorAll(".source-seg").length === 2
		&& `+row+`.querySelector(".sources-legend").textContent === "bravo 67%charlie 33%"`)
	screenshot(t, ctx, "files-download-en")

	// Pause and resume reach the service and show.
	click(t, ctx, `#files-transfers button[data-act="pause"][data-id="`+big.ID.String()+`"]`)
	browsertest.Until(t, ctx, wait, row+`.dataset.state === "paused"
		&& `+row+`.querySelector(".transfer-state").textContent === "Paused"
		&& `+row+`.querySelector('button[data-act="resume"]') !== null`)
	if tr, _ := files.transfer(big.ID); tr.State != shards.StatePaused {
		t.Errorf("after pause: %s", tr.State)
	}
	click(t, ctx, `#files-transfers button[data-act="resume"][data-id="`+big.ID.String()+`"]`)
	browsertest.Until(t, ctx, wait, row+`.dataset.state === "downloading"`)
	files.advance(big.ID, big.Size, 0, map[mesh.ID]int64{bravo: big.Size / 2, charlie: big.Size / 2})
	browsertest.Until(t, ctx, wait, fill+` === "100%" && `+row+`.dataset.state === "done"
		&& document.querySelector('#files-table tr[data-id="`+big.ID.String()+`"] .badge').textContent === "Done"`)

	// Share a file by path.
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte("shared from alpha\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys("#files-share-path", path)); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, "#files-share-btn")
	notes := `document.querySelector('#files-transfers li[data-state="seeding"]')`
	browsertest.Until(t, ctx, wait, notes+` !== null && `+notes+`.querySelector(".transfer-name").textContent === "notes.txt"
		&& document.querySelector("#files-share-path").value === ""
		&& `+notes+`.querySelector('button[data-act="push"]').textContent === "Push to…"
		&& document.querySelector("#files-push-none") !== null && !document.querySelector("#files-push-none").hidden`)

	// Push it: the dialog lists the other nodes and this node's channels,
	// and says what is wrong before and after asking the node.
	notesID, err := chromedp.Run(ctx, chromedp.Evaluate[string](notes+`.dataset.id`))
	if err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `#files-transfers li[data-id="`+notesID+`"] button[data-act="push"]`)
	dialog := `document.querySelector("#files-push-dialog")`
	perr := `document.querySelector("#files-push-error").textContent`
	browsertest.Until(t, ctx, wait, dialog+`.open
		&& document.querySelector("#files-push-dialog h2").textContent === "Push “notes.txt”"
		&& document.querySelectorAll('#files-push-nodes input[name="to"]').length === 2
		&& document.querySelectorAll("#files-push-channel option").length === 3`)
	click(t, ctx, "#files-push-btn")
	browsertest.Until(t, ctx, wait, perr+` === "Pick at least one node."`)
	click(t, ctx, "#files-push-mode-channel")
	for _, c := range []struct{ id, msg string }{
		{"c-gone", "There is no channel #gone here any more."},
		{"c-alone", "No other member of #alone is online."},
	} {
		if err := chromedp.Do(ctx, chromedp.SetValue("#files-push-channel", c.id)); err != nil {
			t.Fatal(err)
		}
		click(t, ctx, "#files-push-btn")
		browsertest.Until(t, ctx, wait, perr+` === "`+c.msg+`" && `+dialog+`.open`)
	}
	if err := chromedp.Do(ctx, chromedp.SetValue("#files-push-channel", "c-team")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, "#files-push-plan-chain")
	click(t, ctx, "#files-push-btn")
	panel := `document.querySelector("#files-push-status li.push")`
	recv := func(id mesh.ID) string { return panel + `.querySelector('li[data-node="` + string(id) + `"]')` }
	browsertest.Until(t, ctx, wait, `!`+dialog+`.open && `+panel+` !== null && `+panel+`.dataset.state === "running"
		&& `+recv(bravo)+`.dataset.state === "receiving" && `+recv(charlie)+`.querySelector(".push-node").textContent === "charlie"
		&& `+panel+`.querySelector(".push-state").textContent === "0 of 2 done"
		&& document.querySelector("#files-push-none").hidden`)
	pid, err := chromedp.Run(ctx, chromedp.Evaluate[string](panel+`.dataset.id`))
	if err != nil {
		t.Fatal(err)
	}
	if calls := files.callLog(); !slices.Contains(calls, "push "+notesID+" chain 2") {
		t.Errorf("calls %q: want a chain push of notes.txt to the team's two other members", calls)
	}
	files.setPush(pid, func(st *shards.PushStatus) {
		st.Receivers[0].Have, st.Receivers[0].State = st.Size, "done"
		st.Uploaded = st.Size / 2
	})
	browsertest.Until(t, ctx, wait, panel+`.querySelector(".push-state").textContent === "1 of 2 done"
		&& `+recv(bravo)+`.querySelector(".progress").getAttribute("aria-valuenow") === "100"
		&& `+recv(charlie)+`.querySelector(".progress").getAttribute("aria-valuenow") === "0"`)
	files.setPush(pid, func(st *shards.PushStatus) {
		st.Receivers[1].Have, st.Receivers[1].State = st.Size, "done"
		st.Uploaded, st.Done = st.Size, true
	})
	browsertest.Until(t, ctx, wait, panel+`.dataset.state === "done" && `+panel+`.querySelector(".push-state").textContent === "Done"
		&& `+recv(charlie)+`.dataset.state === "done"
		&& `+panel+`.querySelector(".push-sent").textContent === "18 B of 18 B sent by this node"`)
	screenshot(t, ctx, "files-push-en")

	// A bad link says what is wrong.
	if err := chromedp.Do(ctx, chromedp.SendKeys("#files-link", "http://example.com/cat.png")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, "#files-link-btn")
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-link-error").textContent.includes("bad link")`)

	// Cancel asks first, then removes the download.
	remove := `#files-transfers button[data-act="remove"][data-id="` + big.ID.String() + `"]`
	click(t, ctx, remove)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`document.querySelector(%q).textContent === "Delete the download?"`, remove))
	click(t, ctx, remove)
	browsertest.Until(t, ctx, wait, row+` === null`)
	if _, ok := files.transfer(big.ID); ok {
		t.Error("the download was not removed")
	}
}

// TestBrowserFilesAtScale: with thousands of files online the view draws a
// page of them and a button for more; a large image is not fetched for its
// thumbnail; and the directory the stream resends every few seconds does
// not make the view read the whole file list again, only a node coming
// does.
func TestBrowserFilesAtScale(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	bravo := fakeID("bravo")
	node.setRecords(mesh.Record{ID: node.id, Name: "alpha"}, mesh.Record{ID: bravo, Name: "bravo"})
	files := newFakeFiles(node.id)
	const images, others = 1500, 3000
	for i := range images {
		files.addRemote(fmt.Sprintf("img-%05d.png", i), []byte(fmt.Sprintf("image %d", i)), bravo)
	}
	for i := range others {
		files.addRemote(fmt.Sprintf("doc-%05d.txt", i), []byte(fmt.Sprintf("text %d", i)), bravo)
	}
	hugeB := make([]byte, 20<<20)
	hugeB[0] = 1
	huge := files.addRemote("a-huge.png", hugeB, bravo)
	const total = images + others + 1

	s, err := New(Config{Addr: "127.0.0.1:0", Version: "test", Files: files}, node)
	if err != nil {
		t.Fatal(err)
	}
	s.timing.refresh = 500 * time.Millisecond // the directory, resent
	base, _ := serve(t, s)
	ctx := browsertest.New(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	const wait = 20 * time.Second
	browsertest.Until(t, ctx, wait, `document.querySelector('.nav-link[data-view="files"]') !== null`)
	click(t, ctx, `.nav-link[data-view="files"]`)
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`document.querySelector("#files-count") !== null
		&& document.querySelector("#files-count").textContent === "%d files online"
		&& document.querySelectorAll("#files-table tbody tr").length === 500
		&& document.querySelector("#files-all [data-more=rows]").textContent.startsWith("Showing 500 of %d.")
		&& document.querySelectorAll("#files-gallery .tile").length === 120
		&& document.querySelectorAll("#files-gallery .tile.loaded, #files-gallery .tile.broken").length > 0`, total, total))

	// The large image has a tile without a thumbnail, and was not fetched.
	bigTile := `document.querySelector('#files-gallery .tile[data-id="` + huge.ID.String() + `"]')`
	browsertest.Until(t, ctx, wait, bigTile+` !== null && `+bigTile+`.querySelector("img") === null
		&& `+bigTile+`.querySelector(".tile-big").textContent.startsWith("Large image (20 MiB)")`)
	if _, opens := files.counts(huge.ID); opens != 0 {
		t.Errorf("the large image was opened %d times for its thumbnail", opens)
	}

	// More rows on demand.
	click(t, ctx, `#files-all button[data-act="more"]`)
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#files-table tbody tr").length === 1000`)

	// The directory comes again and again, unchanged: the file list is
	// not read again.
	listed, _ := files.counts(huge.ID)
	snapshots := func() int { return node.recordsCopied() / 2 }
	from := snapshots()
	testutil.WaitFor(t, wait, "five more directory snapshots", func() bool { return snapshots() >= from+5 })
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#files-table tbody tr").length === 1000`)
	if now, _ := files.counts(huge.ID); now != listed {
		t.Errorf("the file list was read %d more times while the directory did not change", now-listed)
	}

	// A node comes online: the list is read again.
	node.setRecords(mesh.Record{ID: fakeID("charlie"), Name: "charlie"})
	testutil.WaitFor(t, wait, "the file list to be read again", func() bool {
		now, _ := files.counts(huge.ID)
		return now > listed
	})

	// Opening the large image loads it.
	click(t, ctx, `#files-gallery .tile[data-id="`+huge.ID.String()+`"] .tile-open`)
	testutil.WaitFor(t, wait, "the viewer to open the large image", func() bool {
		_, opens := files.counts(huge.ID)
		return opens > 0
	})
}
