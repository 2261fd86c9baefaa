package webui

import (
	"testing"
	"time"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
)

// TestBrowserFilesPushDialogDirectory: the push dialog is open and the
// user presses bravo's box when a node comes online, and then a name
// changes; the box comes up after. The click must tick bravo (a dialog
// redrawn whole on each directory change lost it: "carol done, bob never"),
// charlie's box ticked before must stay ticked, and the boxes must be the
// same elements throughout.
func TestBrowserFilesPushDialogDirectory(t *testing.T) {
	checkGoroutines(t)
	node, files, album, bravo, charlie := pushThreeNodes(t)
	ctx, _, _ := gatedFilesPage(t, node, files)
	const wait = 20 * time.Second
	box := func(n mesh.ID) string { return `#files-push-dialog input[name="to"][value="` + string(n) + `"]` }
	q := func(n mesh.ID) string { return `document.querySelector('` + box(n) + `')` }
	click(t, ctx, `#files-transfers button[data-act="push"][data-id="`+album.ID.String()+`"]`)
	browsertest.Until(t, ctx, wait, `document.querySelector("#files-push-dialog").open && `+q(bravo)+` !== null && `+q(charlie)+` !== null`)
	click(t, ctx, box(charlie))
	browsertest.Until(t, ctx, wait, q(charlie)+`.checked`)
	checkJS(t, ctx, `(window.boxes = [`+q(bravo)+`, `+q(charlie)+`]) && true`, "")

	dave := fakeID("dave")
	release := press(t, ctx, box(bravo))
	node.setRecords(mesh.Record{ID: dave, Name: "dave"})
	browsertest.Until(t, ctx, wait, q(dave)+` !== null`)
	node.setRecords(mesh.Record{ID: charlie, Name: "charlie2"})
	browsertest.Until(t, ctx, wait, q(charlie)+`.parentElement.textContent.startsWith("charlie2")`)
	release()
	checkJS(t, ctx, q(bravo)+`.checked`, "bravo's box, pressed while a node came online, was not ticked: the dialog was redrawn under the click")
	checkJS(t, ctx, q(charlie)+`.checked && !`+q(dave)+`.checked`, "the ticks did not stay with their nodes")
	checkJS(t, ctx, `window.boxes[0] === `+q(bravo)+` && window.boxes[1] === `+q(charlie),
		"a directory change replaced the boxes of nodes that stayed online")

	// A node that goes offline takes its box away; the others stay.
	node.removeRecord(charlie)
	browsertest.Until(t, ctx, wait, q(charlie)+` === null`)
	checkJS(t, ctx, q(bravo)+`.checked && window.boxes[0] === `+q(bravo), "a node going offline changed the others' boxes")
	click(t, ctx, "#files-push-btn")
	browsertest.Until(t, ctx, wait, pushPanel+` !== null && `+pushPanel+`.querySelectorAll(".push-receivers li").length === 1 && `+pushRecv(bravo)+` !== null`)
}
