package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// servedNode is a `catnest serve` process as its first lines describe it.
type servedNode struct {
	proc *proc
	id   mesh.ID
	ui   string // http://127.0.0.1:PORT/
	key  string // API key
	data string
}

// startSignalProc runs `catnest signal` on loopback with discovery and
// returns its URL.
func startSignalProc(t *testing.T) string {
	t.Helper()
	return startSignalAt(t, "/e2e")
}

// startSignalAt runs `catnest signal` on loopback with discovery at path
// ("" for the root) and returns its URL.
func startSignalAt(t *testing.T, path string) string {
	t.Helper()
	port := freePort(t)
	args := []string{"signal", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--allow-discovery"}
	if path != "" {
		args = append(args, "--path", path)
	}
	sig := startProc(t, args...)
	sig.expect(t, `catnest rendezvous on http://127\.0\.0\.1:\d+`+regexp.QuoteMeta(path))
	return fmt.Sprintf("http://127.0.0.1:%d%s", port, cmp.Or(path, "/"))
}

// serveNode runs `catnest serve` named name on data with more flags.
func serveNode(t *testing.T, signalURL, name, data string, flags ...string) *servedNode {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--http", "127.0.0.1:0", "--signal", signalURL, "--name", name, "--loopback"}, flags...)
	p := startProc(t, args...)
	n := &servedNode{proc: p, data: data}
	n.id = mesh.ID(p.expect(t, `^catnest node ([a-z2-7]{32}) \(`+name+`\)$`)[1])
	n.ui = p.expect(t, `^web UI: (http://127\.0\.0\.1:\d+/)$`)[1]
	n.key = p.expect(t, `^API key: (\S+) `)[1]
	return n
}

// api calls the node's API as a script does (with its API key) and
// decodes the answer into out.
func (n *servedNode) api(t *testing.T, method, path string, body, out any) {
	t.Helper()
	status, b := curl(t, method, n.ui+path, n.key, body)
	if status/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// transfer returns the node's share or download of id, if it lists one.
func (n *servedNode) transfer(t *testing.T, id shards.MD5) (shards.Transfer, bool) {
	t.Helper()
	var ts []shards.Transfer
	n.api(t, http.MethodGet, "api/shards", nil, &ts)
	for _, tr := range ts {
		if tr.ID == id {
			return tr, true
		}
	}
	return shards.Transfer{}, false
}

// seeding waits until the node seeds the file with content c (it has
// hashed it) and returns its transfer, whose Link names it.
func (n *servedNode) seeding(t *testing.T, c []byte) shards.Transfer {
	t.Helper()
	id := shards.MD5(md5.Sum(c))
	var tr shards.Transfer
	testutil.WaitFor(t, 60*time.Second, "the node to share "+id.String(), func() bool {
		var ok bool
		tr, ok = n.transfer(t, id)
		if !ok || tr.State != shards.StateSeeding {
			time.Sleep(100 * time.Millisecond)
			return false
		}
		return true
	})
	return tr
}

// runCatnest runs the catnest command line as a child process to its end
// and returns what it printed.
func runCatnest(t *testing.T, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CATNEST_RUN_MAIN=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("catnest %s did not end within %v:\n%s", strings.Join(args, " "), timeout, out.String())
	}
	return out.String(), err
}

// randomFile writes size random bytes to dir/name and returns them.
func randomFile(t *testing.T, dir, name string, size int, seed uint64) []byte {
	t.Helper()
	b := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkFile fails unless path holds want.
func checkFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || md5.Sum(got) != md5.Sum(want) {
		t.Fatalf("%s: %d bytes with MD5 %x, want %d bytes with MD5 %x", path, len(got), md5.Sum(got), len(want), md5.Sum(want))
	}
}

// TestShareAndGetEndToEnd runs the commands as a user would: alice shares
// a folder with `serve --share`; `catnest get` of her file's link against
// bob's node saves it with the right MD5; `catnest share` on bob prints a
// link that `catnest get` against alice's node fetches from bob.
func TestShareAndGetEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	signalURL := startSignalProc(t)
	shared := t.TempDir()
	if err := os.Mkdir(filepath.Join(shared, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	video := randomFile(t, filepath.Join(shared, "sub"), "holiday video.mkv", 12<<20+12345, 1)
	alice := serveNode(t, signalURL, "alice", filepath.Join(t.TempDir(), "alice"), "--share", shared)
	alice.proc.expect(t, `^sharing: `+regexp.QuoteMeta(shared)+`$`)
	bob := serveNode(t, signalURL, "bob", filepath.Join(t.TempDir(), "bob"))

	tr := alice.seeding(t, video)
	link, err := shards.ParseLink(tr.Link)
	if err != nil {
		t.Fatalf("alice's link %q: %v", tr.Link, err)
	}
	if link.Node != alice.id || link.Rendezvous != strings.TrimPrefix(strings.TrimSuffix(signalURL, "/e2e"), "http://") || link.Name != "holiday video.mkv" {
		t.Fatalf("alice's link %+v: want her node, the rendezvous and the file's name", link)
	}
	out := t.TempDir()
	got, err := runCatnest(t, 3*time.Minute, "get", "--node", bob.ui, "--api-key", bob.key, "-o", out, tr.Link)
	if err != nil {
		t.Fatalf("catnest get: %v\n%s", err, got)
	}
	if !strings.Contains(got, "saved "+filepath.Join(out, "holiday video.mkv")) || !strings.Contains(got, "100%") {
		t.Errorf("catnest get printed:\n%s", got)
	}
	checkFile(t, filepath.Join(out, "holiday video.mkv"), video)
	dl, ok := bob.transfer(t, tr.ID)
	if !ok || dl.State != shards.StateDone || dl.Sources[alice.id] != int64(len(video)) {
		t.Errorf("bob's download: %+v (listed %v), want done with every byte from alice", dl, ok)
	}
	// One copy: bob's node saved the file in the folder get named and
	// seeds it from there; its downloads folder holds none, and no part
	// file is left behind.
	if dl.Path != filepath.Join(out, "holiday video.mkv") {
		t.Errorf("bob seeds the file from %q, want the folder get saved it in", dl.Path)
	}
	if entries, _ := os.ReadDir(filepath.Join(bob.data, "downloads")); len(entries) != 0 {
		t.Errorf("bob's downloads folder holds %d files, want none: the file is in %s", len(entries), out)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 {
		t.Errorf("the folder holds %d entries, want the file alone", len(entries))
	}
	if strings.Contains(got, "saving ") {
		t.Errorf("get copied the file the node had saved in place:\n%s", got)
	}

	// catnest share on bob: its link leads alice to bob.
	dir := t.TempDir()
	notes := randomFile(t, dir, "notes.bin", 3<<20+7, 2)
	path := filepath.Join(dir, "notes.bin")
	got, err = runCatnest(t, 2*time.Minute, "share", "--node", bob.ui, "--api-key", bob.key, path)
	if err != nil {
		t.Fatalf("catnest share: %v\n%s", err, got)
	}
	bobLink := strings.TrimSpace(got)
	if l, err := shards.ParseLink(bobLink); err != nil || l.Node != bob.id || l.ID != md5.Sum(notes) {
		t.Fatalf("catnest share printed %q (%v), want bob's link to the file", got, err)
	}
	out = t.TempDir()
	got, err = runCatnest(t, 3*time.Minute, "get", "--node", alice.ui, "--api-key", alice.key, "-o", out, bobLink)
	if err != nil {
		t.Fatalf("catnest get of bob's link: %v\n%s", err, got)
	}
	checkFile(t, filepath.Join(out, "notes.bin"), notes)
}

// sumSources is the bytes a transfer received, from every peer.
func sumSources(tr shards.Transfer) int64 {
	var n int64
	for _, v := range tr.Sources {
		n += v
	}
	return n
}

// TestGetResumesAfterKill9 kills the downloading node with SIGKILL half-way
// through a file from a holder whose uploads are capped, restarts it on the
// same data dir, and runs `catnest get` again: the pieces verified before
// the kill are found on disk again, the holder sends the file once plus at
// most what was in flight at the kill, and the saved file has the right MD5.
// (Sources counts only pieces newly verified, so bob's own counts cannot
// show a piece received twice: alice's upload count is what shows it.
// Those counts survive the restart as far as they were committed.)
func TestGetResumesAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const size = 64 << 20
	signalURL := startSignalProc(t)
	shared := t.TempDir()
	content := randomFile(t, shared, "big.bin", size, 3)
	// 4 MiB/s: the download takes about 16 s, so the kill surely lands
	// mid-way.
	alice := serveNode(t, signalURL, "alice", filepath.Join(t.TempDir(), "alice"), "--share", shared, "--upload-rate", "4MiB")
	bobData := filepath.Join(t.TempDir(), "bob")
	bob := serveNode(t, signalURL, "bob", bobData)
	tr := alice.seeding(t, content)

	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	get := exec.CommandContext(ctx, os.Args[0], "get", "--node", bob.ui, "--api-key", bob.key, "-o", out, tr.Link)
	get.Env = append(os.Environ(), "CATNEST_RUN_MAIN=1")
	var getOut syncBuffer
	get.Stdout, get.Stderr = &getOut, &getOut
	if err := get.Start(); err != nil {
		t.Fatal(err)
	}
	var getErr error
	var wg sync.WaitGroup
	wg.Go(func() { getErr = get.Wait() })
	defer wg.Wait()

	var before shards.Transfer
	testutil.WaitFor(t, 2*time.Minute, "bob to have a quarter of the file", func() bool {
		time.Sleep(50 * time.Millisecond)
		var ok bool
		before, ok = bob.transfer(t, tr.ID)
		return ok && before.Have >= size/4
	})
	bob.proc.cmd.Process.Kill() // kill -9, mid-download
	bob.proc.cmd.Wait()
	if before.Have >= size || before.State != shards.StateDownloading {
		t.Fatalf("bob had %d of %d bytes (%s) at the kill: the upload cap did not hold the download mid-way", before.Have, size, before.State)
	}
	if sumSources(before) != before.Have {
		t.Fatalf("before the kill bob verified %d bytes but counts %d received", before.Have, sumSources(before))
	}
	wg.Wait()
	if getErr == nil {
		t.Fatalf("catnest get ended well although its node was killed:\n%s", getOut.String())
	}
	t.Logf("killed bob with %d of %d bytes (%.0f%%); catnest get said: %s", before.Have, size,
		100*float64(before.Have)/size, lastLine(getOut.String()))

	bob = serveNode(t, signalURL, "bob", bobData)
	first, ok := bob.transfer(t, tr.ID)
	if !ok {
		t.Fatal("bob lost the download across the restart")
	}
	// The bytes alice sent before the kill are still counted: sources
	// are committed with the bitfield (they were {} after a restart).
	restored := sumSources(first)
	t.Logf("after the restart bob lists %d bytes (%s), %d of them counted as received", first.Have, first.State, restored)
	if restored == 0 || restored > size {
		t.Errorf("after the restart bob counts %d bytes received from alice, want those committed before the kill", restored)
	}
	// Pieces verified before the kill are on disk: bob finds them again
	// (the bitfield commits behind the writes, recheck finds the rest)
	// before fetching anything.
	testutil.WaitFor(t, time.Minute, "bob to have again what he had before the kill", func() bool {
		time.Sleep(50 * time.Millisecond)
		tr, _ := bob.transfer(t, tr.ID)
		return tr.Have-(sumSources(tr)-restored) >= before.Have
	})
	got, err := runCatnest(t, 3*time.Minute, "get", "--node", bob.ui, "--api-key", bob.key, "-o", out, tr.Link)
	if err != nil {
		t.Fatalf("catnest get after the restart: %v\n%s", err, got)
	}
	checkFile(t, filepath.Join(out, "big.bin"), content)

	after, _ := bob.transfer(t, tr.ID)
	again := sumSources(after) - restored // received since the restart
	t.Logf("received %d bytes before the kill and %d after: %d in all for a file of %d", before.Have, again, before.Have+again, size)
	if after.State != shards.StateDone || after.Have != size {
		t.Fatalf("bob's download after get: %+v", after)
	}
	// The holder's side: it sent the file once, plus at most the requests
	// in flight when bob died (at most 16 blocks of 256 KiB per link).
	sent, _ := alice.transfer(t, tr.ID)
	t.Logf("alice uploaded %d bytes for a file of %d (%.3fx)", sent.Uploaded, size, float64(sent.Uploaded)/size)
	if slack := int64(4 << 20); sent.Uploaded > size+slack {
		t.Errorf("alice uploaded %d bytes for a file of %d: more than one file and %d bytes in flight", sent.Uploaded, size, slack)
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// clickSel clicks the element sel with the mouse, as a user does.
func clickSel(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	browsertest.Until(t, ctx, 30*time.Second, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	pt, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](fmt.Sprintf(`(() => {
		const el = document.querySelector(%q);
		el.scrollIntoView({ block: "nearest" });
		const r = el.getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2];
	})()`, sel)))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	if err := chromedp.Do(ctx, chromedp.MouseClickXY(pt[0], pt[1])); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// clickFor clicks sel until cond holds, for a click whose effect the test
// then waits on. The Files view redraws its table on every transfer state
// change and catalog event: one redrawn between the button's mousedown and
// mouseup (seen: mousedown on BUTTON, mouseup on the new TD) is no click,
// and the test waited out its browser's minute for a download never
// asked for (3 runs in 20 on a loaded machine). A click that went astray
// is made again, and logged.
func clickFor(t *testing.T, ctx context.Context, sel, cond string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		clickSel(t, ctx, sel)
		err := browsertest.Wait(ctx, 10*time.Second, cond)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clicked %s: waiting for %s: %v", sel, cond, err)
		}
		t.Logf("clicked %s: no %s within 10 s; again", sel, cond)
	}
}

// TestBrowserFilesAcrossNodes runs three real nodes: alice shares a folder
// with an image and a larger file and caps her uploads; bob's Files view in
// Chromium shows her image in the gallery, and downloads the larger file
// with a progress bar that is seen part-way and then at 100%. Then, in
// alice's Files view, "Push to…" on another of her files pushes it to bob
// and carol (who take pushes from her): the push panel shows both
// receivers done and what alice sent, and both hold the file.
func TestBrowserFilesAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	signalURL := startSignalProc(t)
	shared := t.TempDir()
	paths, err := writeDemoFiles(shared, "alice")
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(paths[0]) // alice-rings.png
	if err != nil {
		t.Fatal(err)
	}
	big := randomFile(t, shared, "holiday.mkv", 16<<20, 4)
	album := randomFile(t, shared, "album.flac", 3<<20+77, 6)
	// 4 MiB/s: about four seconds of download, for the bar to be seen.
	alice := serveNode(t, signalURL, "alice", filepath.Join(t.TempDir(), "alice"), "--share", shared, "--upload-rate", "4MiB")
	bob := serveNode(t, signalURL, "bob", filepath.Join(t.TempDir(), "bob"), "--accept-push", string(alice.id))
	carol := serveNode(t, signalURL, "carol", filepath.Join(t.TempDir(), "carol"), "--accept-push", string(alice.id))
	alice.seeding(t, big)
	albumTr := alice.seeding(t, album)
	imgID, bigID := shards.MD5(md5.Sum(img)).String(), shards.MD5(md5.Sum(big)).String()

	// Longer than New's minute: the steps below wait up to a minute each
	// (the push two), and on a loaded machine all of them took 30 s.
	ctx := browsertest.NewFor(t, 4*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate(bob.ui)); err != nil {
		t.Fatal(err)
	}
	clickSel(t, ctx, `.nav-link[data-view="files"]`)
	const wait = 60 * time.Second
	tile := `document.querySelector('#files-gallery .tile[data-id="` + imgID + `"]')`
	browsertest.Until(t, ctx, wait, tile+` !== null && `+tile+`.classList.contains("loaded")
		&& `+tile+`.querySelector("img").naturalWidth > 0
		&& `+tile+`.querySelector(".tile-name").textContent === "alice-rings.png"`)

	row := `document.querySelector('#files-transfers li[data-id="` + bigID + `"]')`
	clickFor(t, ctx, `#files-table button[data-act="fetch"][data-id="`+bigID+`"]`, row+` !== null`, wait)
	bar := row + `.querySelector(".progress")`
	fill := `parseFloat(` + row + `.querySelector(".progress-fill").style.width)`
	browsertest.Until(t, ctx, wait, row+` !== null && `+row+`.dataset.state === "downloading"
		&& `+bar+`.getBoundingClientRect().width > 0 && `+fill+` > 0 && `+fill+` < 100`)
	browsertest.Until(t, ctx, wait, row+`.dataset.state === "done" && `+fill+` === 100
		&& `+bar+`.getAttribute("aria-valuenow") === "100"`)
	tr, ok := bob.transfer(t, shards.MD5(md5.Sum(big)))
	if !ok || tr.State != shards.StateDone {
		t.Fatalf("bob's download: %+v", tr)
	}
	checkFile(t, tr.Path, big)

	// alice pushes the album to bob and carol from her Files view.
	if err := chromedp.Do(ctx, chromedp.Navigate(alice.ui)); err != nil {
		t.Fatal(err)
	}
	clickSel(t, ctx, `.nav-link[data-view="files"]`)
	pushBtn := `#files-transfers button[data-act="push"][data-id="` + albumTr.ID.String() + `"]`
	browsertest.Until(t, ctx, wait, `document.querySelector('`+pushBtn+`') !== null`)
	clickSel(t, ctx, pushBtn)
	box := func(n *servedNode) string { return `#files-push-dialog input[name="to"][value="` + string(n.id) + `"]` }
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-push-dialog").open
		&& document.querySelector('`+box(bob)+`') !== null && document.querySelector('`+box(carol)+`') !== null`)
	// The dialog follows the directory (resent every few seconds) but keeps
	// its boxes: one click ticks each.
	for _, n := range []*servedNode{bob, carol} {
		clickSel(t, ctx, box(n))
		if err := browsertest.Wait(ctx, 10*time.Second, `document.querySelector('`+box(n)+`').checked`); err != nil {
			t.Fatalf("%s's box not ticked by a click (the dialog redrawn under it?): %v", n.id, err)
		}
	}
	clickSel(t, ctx, "#files-push-plan-matrix")
	clickSel(t, ctx, "#files-push-btn")
	panel := `document.querySelector("#files-push-status li.push")`
	recv := func(n *servedNode) string {
		return panel + `.querySelector('.push-receivers li[data-node="` + string(n.id) + `"]')`
	}
	if err := browsertest.Wait(ctx, 2*time.Minute, `!document.querySelector("#files-push-dialog").open && `+panel+` !== null
		&& `+panel+`.dataset.state === "done"
		&& `+panel+`.querySelector(".push-state").textContent === "Done"
		&& `+recv(bob)+`.dataset.state === "done" && `+recv(carol)+`.dataset.state === "done"
		&& `+recv(bob)+`.querySelector(".progress").getAttribute("aria-valuenow") === "100"
		&& `+recv(carol)+`.querySelector(".progress").getAttribute("aria-valuenow") === "100"
		&& /^3(\.\d)? MiB of 3 MiB sent by this node$/.test(`+panel+`.querySelector(".push-sent").textContent)`); err != nil {
		logPushStuck(t, ctx, alice, albumTr.ID, bob, carol)
		t.Fatalf("the push panel did not show both receivers done: %v", err)
	}
	for _, n := range []*servedNode{bob, carol} {
		var got shards.Transfer
		testutil.WaitFor(t, time.Minute, "the pushed album to be done on "+string(n.id), func() bool {
			time.Sleep(50 * time.Millisecond)
			got, _ = n.transfer(t, albumTr.ID)
			return got.State == shards.StateDone
		})
		checkFile(t, got.Path, album)
	}
}

// logPushStuck logs, for a push whose panel did not come to done, what
// the page shows, alice's own answer for the push and each receiver's
// download of id: whether the push or the page was stuck.
func logPushStuck(t *testing.T, ctx context.Context, alice *servedNode, id shards.MD5, receivers ...*servedNode) {
	t.Helper()
	panel, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const p = document.querySelector("#files-push-status li.push");
		if (!p) return "no panel: " + document.querySelector("#files-push-status").innerText;
		return p.dataset.id + " " + p.dataset.state + ": " + [...p.querySelectorAll(".push-receivers li")]
			.map((li) => li.dataset.node + "=" + li.dataset.state + " " + li.querySelector(".progress").getAttribute("aria-valuenow") + "%").join(", ");
	})()`))
	t.Logf("the page's push panel: %s; event stream %q", panel, evalString(ctx, `document.querySelector("#conn").dataset.state`))
	if pid := evalString(ctx, `document.querySelector("#files-push-status li.push")?.dataset.id || ""`); pid != "" {
		var st shards.PushStatus
		alice.api(t, http.MethodGet, "api/shards/push/"+pid, nil, &st)
		t.Logf("alice's GET /api/shards/push/%s: done %v, uploaded %d of %d, receivers %+v", pid, st.Done, st.Uploaded, st.Size, st.Receivers)
	}
	for _, n := range receivers {
		tr, ok := n.transfer(t, id)
		t.Logf("%s's transfer of %s: found %v, state %s, have %d of %d, waiting %q, error %q", n.id, id, ok, tr.State, tr.Have, tr.Size, tr.Waiting, tr.Error)
	}
}

// evalString is the string value of the JS expr in the page, or the error.
func evalString(ctx context.Context, expr string) string {
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		return err.Error()
	}
	return s
}

func TestServeFilesFlags(t *testing.T) {
	base := []string{"--signal", "http://127.0.0.1:9000/x"}
	id := mesh.ID(strings.Repeat("a", 32))
	for _, tt := range []struct {
		rate string
		want int64
	}{
		{"2MiB", 2 << 20},
		{"1.5 MB", 1_500_000},
		{"500000", 500_000},
		{"64KiB/s", 64 << 10},
		{"0", 0},
		{"0.0 MiB", 0},
		{"5 MiB/s", 5 << 20},
	} {
		cfg, err := parseServe(append(base, "--upload-rate", tt.rate, "--accept-push", string(id)), io.Discard)
		if err != nil {
			t.Fatalf("--upload-rate %q: %v", tt.rate, err)
		}
		if cfg.UploadRate != tt.want || len(cfg.AcceptPush) != 1 || cfg.AcceptPush[0] != id {
			t.Errorf("--upload-rate %q: %d, accept %v; want %d", tt.rate, cfg.UploadRate, cfg.AcceptPush, tt.want)
		}
	}
	cfg, err := parseServe(base, io.Discard)
	if err != nil || cfg.UploadRate != 0 || cfg.AcceptPush != nil {
		t.Fatalf("defaults: %+v, %v; want no cap and no pushes taken", cfg, err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--upload-rate", "fast"}, "bytes per second"},
		{[]string{"--upload-rate", "-1"}, "bytes per second"},
		{[]string{"--upload-rate", "9EiB"}, "too large"},
		{[]string{"--upload-rate", "1e100"}, "bytes per second"},
		{[]string{"--upload-rate", "0.5"}, "under one byte"},
		{[]string{"--upload-rate", "0.4 B/s"}, "under one byte"},
		{[]string{"--accept-push", "bob"}, "--accept-push"},
	} {
		if _, err := parseServe(append(base, tt.args...), io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
	for _, tt := range []struct{ url, want string }{
		{"http://127.0.0.1:9000/x", "127.0.0.1:9000"},
		{"https://rv.example.org/catnest", "rv.example.org:443"},
		{"http://rv.example.org/", "rv.example.org:80"},
		{"http://[::1]:9000/", "[::1]:9000"},
	} {
		if got, err := rendezvousHost(tt.url); err != nil || got != tt.want {
			t.Errorf("rendezvousHost(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
		}
	}
	var out, errOut bytes.Buffer
	run(context.Background(), []string{"serve", "--help"}, &out, &errOut)
	for _, want := range []string{"-share DIR", "-upload-rate BYTES", "-accept-push ID", "catnest get"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("serve --help lacks %q:\n%s", want, errOut.String())
		}
	}
}

// TestPushTakenOnlyFromAccepted: alice pushes a file to bob, who was
// started with --accept-push alice, and to carol, who was not: bob ends
// with the file, carol refuses it and stores nothing.
func TestPushTakenOnlyFromAccepted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	signalURL := startSignalProc(t)
	shared := t.TempDir()
	content := randomFile(t, shared, "album.flac", 6<<20+99, 5)
	alice := serveNode(t, signalURL, "alice", filepath.Join(t.TempDir(), "alice"), "--share", shared)
	bob := serveNode(t, signalURL, "bob", filepath.Join(t.TempDir(), "bob"), "--accept-push", string(alice.id))
	carol := serveNode(t, signalURL, "carol", filepath.Join(t.TempDir(), "carol"))
	tr := alice.seeding(t, content)
	testutil.WaitFor(t, 60*time.Second, "alice to link bob and carol", func() bool {
		time.Sleep(100 * time.Millisecond)
		ps := peerNames(t, alice.ui)
		return ps["bob"].ID == string(bob.id) && ps["carol"].ID == string(carol.id)
	})

	var created struct{ ID string }
	alice.api(t, http.MethodPost, "api/shards/push", map[string]any{"id": tr.ID, "to": []mesh.ID{bob.id, carol.id}, "plan": "matrix"}, &created)
	var st shards.PushStatus
	testutil.WaitFor(t, 2*time.Minute, "bob to have the pushed file and carol to be given up", func() bool {
		time.Sleep(100 * time.Millisecond)
		alice.api(t, http.MethodGet, "api/shards/push/"+created.ID, nil, &st)
		return st.Done
	})
	states := map[mesh.ID]string{}
	for _, r := range st.Receivers {
		states[r.Node] = r.State
	}
	if states[bob.id] != "done" || states[carol.id] == "done" {
		t.Fatalf("push receivers %+v: want bob done and carol not", st.Receivers)
	}
	// The push ends when bob has every piece; he then checks the whole
	// file and moves it into place.
	var got shards.Transfer
	testutil.WaitFor(t, time.Minute, "bob's pushed download to be done", func() bool {
		time.Sleep(50 * time.Millisecond)
		got, _ = bob.transfer(t, tr.ID)
		return got.State == shards.StateDone
	})
	checkFile(t, got.Path, content)
	// bob serves the file now: its link names him and his rendezvous.
	al, _ := shards.ParseLink(tr.Link)
	if l, err := shards.ParseLink(got.Link); err != nil || l.Node != bob.id || l.Rendezvous == "" || l.Rendezvous != al.Rendezvous {
		t.Errorf("bob's link to the pushed file %q (%v): want his node and the rendezvous", got.Link, err)
	}
	if c, ok := carol.transfer(t, tr.ID); ok {
		t.Fatalf("carol took a push she never accepted: %+v", c)
	}
}
