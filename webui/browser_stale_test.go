package webui

import (
	"context"
	"crypto/md5"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/plugins"
	"github.com/catnest/catnest/shards"
)

// Views other than Files that read state with GETs and follow it with
// events: each test holds one GET until a newer event is shown, then lets
// it go, and the view must keep what the event said.

// TestBrowserMusicScanHeldGET: the Music view's first read of the scan
// is on its way when the scan finishes. Its answer ("scanning") must not
// bring the finished scan's progress back.
func TestBrowserMusicScanHeldGET(t *testing.T) {
	checkGoroutines(t)
	m := newFakeMusic()
	m.add(music.Track{Title: "Purr Song", Artist: "Cats", Album: "LP", Format: "mp3", Duration: 200}, []byte("audio"))
	m.setScan(music.ScanStatus{State: "scanning", Files: 10, Done: 4, Bytes: 3 << 20})
	ctx, holds := holdingPage(t, newFakeNode("alpha"), Config{Music: m}, "en-US", "music", true, "/api/music/scan")
	const wait = 10 * time.Second
	held := holds["/api/music/scan"]
	held.wait(t, wait) // it has read "scanning"
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-scan") !== null`)

	m.setScan(music.ScanStatus{State: "idle", Files: 10, Done: 10})
	browsertest.Until(t, ctx, wait, `document.querySelector("#music-scan").hidden`)
	held.letGoAndWait(t, ctx, "readScan", wait)
	checkJS(t, ctx, `document.querySelector("#music-scan").hidden`,
		"the first read of the scan, answered while it ran and read after it finished, showed it running again")
}

// TestBrowserMeshPeersHeldGET: the Mesh view polls this node's links for
// their bytes; a poll is on its way when a link turns out relayed. Its
// answer, older than that "peers" event, must not take the relay away.
func TestBrowserMeshPeersHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	node.add(fakePeer("bravo", 9*time.Millisecond, true, time.Now()))
	node.add(fakePeer("delta", 30*time.Millisecond, false, time.Now()))
	node.setRecords(ringDirectory(time.Now())...)
	ctx, holds := holdingPage(t, node, Config{}, "en-US", "mesh", true, "/api/peers")
	const wait = 20 * time.Second // the first poll is 5 s after the view opens
	held := holds["/api/peers"]
	held.wait(t, wait) // it has read two direct links
	browsertest.Until(t, ctx, wait, `document.querySelector("#mesh-relayed")?.hidden === true
		&& document.querySelectorAll("#mesh-graph .mesh-edge").length === 4`)

	delta := fakePeer("delta", 30*time.Millisecond, false, time.Now())
	delta.Route, delta.Relayed, delta.BytesIn, delta.BytesOut = mesh.RouteTURN, true, 500, 100
	node.add(delta)
	browsertest.Until(t, ctx, wait, `!document.querySelector("#mesh-relayed").hidden
		&& document.querySelectorAll("#mesh-graph .mesh-edge.relayed").length === 1`)
	held.letGoAndWait(t, ctx, "readPeers", wait)
	checkJS(t, ctx, `!document.querySelector("#mesh-relayed").hidden
		&& document.querySelectorAll("#mesh-graph .mesh-edge.relayed").length === 1`,
		"a poll of the links, answered before one turned relayed and read after its event, took the relay away")
}

// TestBrowserMeshDirectoryHeldGET: the Mesh view reads the directory
// when it opens (the stream sent it before the view listened); that read
// is on its way when three nodes come online. Its answer, with this node
// alone, must not take them away.
func TestBrowserMeshDirectoryHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	ring := ringDirectory(time.Now())
	node.setRecords(ring[0])
	ctx, holds := holdingPage(t, node, Config{}, "en-US", "mesh", true, "/api/directory")
	const wait = 10 * time.Second
	held := holds["/api/directory"]
	held.wait(t, wait) // it has read alpha alone

	node.setRecords(ring...)
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#mesh-graph .mesh-node").length === 4`)
	held.letGoAndWait(t, ctx, "readDirectory", wait)
	checkJS(t, ctx, `document.querySelectorAll("#mesh-graph .mesh-node").length === 4
		&& document.querySelector("#mesh-count").textContent === "4 nodes online · 4 links"`,
		"the Mesh view's first read of the directory, older than the event that brought three nodes, took them away")
}

// TestBrowserChatChannelsHeldGET: the Chat view's first read of the
// channels is on its way when a channel is made; its event makes the view
// read them again, and that answer comes first. The older one, coming
// last, must not take the new channel away.
func TestBrowserChatChannelsHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	chat := newFakeChat(node.id)
	chat.addChannel(chatlog.ChannelInfo{ID: generalID, Name: "general", Joined: true, Members: 2})
	chat.addChannel(chatlog.ChannelInfo{ID: historyID, Name: "history", Joined: true, Members: 2})
	ctx, holds := holdingPage(t, node, Config{Chat: chat}, "en-US", "chat", true, "/api/channels")
	const wait = 10 * time.Second
	held := holds["/api/channels"]
	held.wait(t, wait) // it has read general and history

	if _, err := chat.CreateChannel(context.Background(), "new", false); err != nil {
		t.Fatal(err)
	}
	joined := `[...document.querySelectorAll("#chat-joined .chan-name")].map((e) => e.textContent).join(",")`
	browsertest.Until(t, ctx, wait, joined+` === "general,history,new"`)
	held.letGoAndWait(t, ctx, "readChannels", wait)
	checkJS(t, ctx, joined+` === "general,history,new"`,
		"the Chat view's first read of the channels, answered before a channel was made and read after the next read, took the channel away")
}

// TestBrowserPluginsMarketHeldGET: the Plugins view's first read of the
// market is on its way when a plugin is published; its event makes the
// view read the market again, and that answer comes first. The older one,
// coming last, must not take the new plugin away.
func TestBrowserPluginsMarketHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	listing := func(name string) plugins.Listing {
		return plugins.Listing{ID: md5.Sum([]byte(name)), Name: name, Version: "1.0", Permissions: []string{},
			Publisher: fakeID("bravo"), PublisherName: "bravo", Online: true}
	}
	fp := &fakePlugins{market: []plugins.Listing{listing("clock")}}
	ctx, holds := holdingPage(t, node, Config{Plugins: fp}, "en-US", "plugins", true, "/api/plugins/market")
	const wait = 10 * time.Second
	held := holds["/api/plugins/market"]
	held.wait(t, wait) // it has read clock alone

	fp.setMarket(listing("clock"), listing("weather"))
	names := `[...document.querySelectorAll("#plugins-market li")].map((e) => e.dataset.name).join(",")`
	browsertest.Until(t, ctx, wait, names+` === "clock,weather"`)
	held.letGoAndWait(t, ctx, "readMarket", wait)
	checkJS(t, ctx, names+` === "clock,weather"`,
		"the Plugins view's first read of the market, answered before a plugin was published and read after the next read, took the plugin away")
}

// TestBrowserPluginsInstalledHeldGET: the Plugins view's first read of
// the installed plugins is on its way when one is installed; its event
// makes the view read them again, and that answer comes first. The older
// one, coming last, must not take the new plugin away. The page's plugin
// host reads the same path on that event, so the view's reads are counted
// before the held one is let go, not the path's GETs.
func TestBrowserPluginsInstalledHeldGET(t *testing.T) {
	checkGoroutines(t)
	installed := func(name string) plugins.Installed {
		// Disabled: the page's host runs no plugin.
		return plugins.Installed{ID: md5.Sum([]byte(name)), Name: name, Version: "1.0", Permissions: []string{},
			Publisher: fakeID("bravo"), PublisherName: "bravo"}
	}
	fp := &fakePlugins{installed: []plugins.Installed{installed("clock")}}
	ctx, holds := holdingPage(t, newFakeNode("alpha"), Config{Plugins: fp}, "en-US", "plugins", true, "/api/plugins")
	const wait = 10 * time.Second
	held := holds["/api/plugins"]
	held.wait(t, wait) // the view's read at mount: clock alone

	click(t, ctx, `#plugins-tab-installed`)
	names := `[...document.querySelectorAll("#plugins-installed li")].map((e) => e.dataset.name).join(",")`
	browsertest.Until(t, ctx, wait, names+` === "clock"`)
	fp.setInstalled(installed("clock"), installed("weather"))
	browsertest.Until(t, ctx, wait, names+` === "clock,weather"`)
	reads, err := chromedp.Run(ctx, chromedp.Evaluate[string](viewRead("readInstalled")))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(reads)
	held.letGo()
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`Number(%s) === %d`, viewRead("readInstalled"), n+1))
	checkJS(t, ctx, names+` === "clock,weather"`,
		"the Plugins view's first read of the installed plugins, answered before one was installed and read after the next read, took it away")
}

// TestBrowserChatOlderHeldGET: the Chat view's read of older messages is
// on its way when one of them is retracted. The retraction's event finds
// no such message shown; the page, answered before it, must not bring the
// retracted text back.
func TestBrowserChatOlderHeldGET(t *testing.T) {
	checkGoroutines(t)
	node := newFakeNode("alpha")
	chat := newFakeChat(node.id)
	chat.addChannel(chatlog.ChannelInfo{ID: generalID, Name: "general", Joined: true, Members: 2})
	start := time.Now().Add(-time.Hour)
	var oldest chatlog.Entry
	for i := range 130 {
		m := chat.receive(generalID, chatlog.Entry{Author: node.id, Text: "old " + strconv.Itoa(i),
			Time: start.Add(time.Duration(i) * time.Second)})
		if i == 0 {
			oldest = m
		}
	}
	path := "/api/channels/" + generalID + "/messages"
	ctx, holds := holdingPage(t, node, Config{Chat: chat}, "en-US", "chat", false, path)
	const wait = 10 * time.Second
	held := holds[path]
	// The only joined channel opens with its newest 100 messages.
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#chat-messages .msg").length === 100
		&& !document.querySelector("#chat-older").hidden`)
	held.arm()
	click(t, ctx, "#chat-older")
	held.wait(t, wait) // it has read the 30 oldest, none retracted

	if err := chat.Retract(context.Background(), generalID, oldest.ID); err != nil {
		t.Fatal(err)
	}
	// Events come in order: once this one is shown, the view has had the
	// retraction.
	after := chat.receive(generalID, chatlog.Entry{Author: node.id, Text: "after"})
	browsertest.Until(t, ctx, wait, msgRow(after.ID)+` !== null`)
	held.letGo()
	browsertest.Until(t, ctx, wait, `document.querySelectorAll("#chat-messages .msg").length === 131`)
	checkJS(t, ctx, msgRow(oldest.ID)+`.classList.contains("retracted")
		&& `+msgRow(oldest.ID)+`.querySelector(".msg-text").textContent === "Message retracted"`,
		"the Chat view's read of older messages, answered before one was retracted and read after, showed its text again")
}

// TestBrowserPluginHostHeldGET: the page's plugin host reads the
// installed plugins on each "plugins" event and runs the enabled ones. A
// read is on its way, with clock enabled, when clock is disabled; the
// next read stops it. The older answer, coming last, must not start it
// again.
func TestBrowserPluginHostHeldGET(t *testing.T) {
	checkGoroutines(t)
	clock := plugins.Installed{ID: md5.Sum([]byte("clock")), Name: "clock", Version: "1.0", Permissions: []string{},
		Granted: []string{}, Publisher: fakeID("bravo"), PublisherName: "bravo", Enabled: true}
	fp := &fakePlugins{installed: []plugins.Installed{clock},
		sources: map[shards.MD5][]byte{clock.ID: []byte("// the clock")}}
	ctx, holds := holdingPage(t, newFakeNode("alpha"), Config{Plugins: fp}, "en-US", "mesh", false, "/api/plugins")
	const wait = 10 * time.Second
	frame := `document.querySelector('iframe.plugin-frame[data-plugin="` + clock.ID.String() + `"]')`
	syncs := `Number(document.documentElement.dataset.pluginSyncs || 0)`
	// The host reads the list when it starts and when the stream opens.
	browsertest.Until(t, ctx, wait, frame+` !== null && `+syncs+` >= 2`)
	held := holds["/api/plugins"]
	held.arm()

	fp.setInstalled(clock)
	held.wait(t, wait) // it has read clock enabled
	off := clock
	off.Enabled = false
	fp.setInstalled(off)
	browsertest.Until(t, ctx, wait, frame+` === null`)
	done, err := chromedp.Run(ctx, chromedp.Evaluate[int](syncs))
	if err != nil {
		t.Fatal(err)
	}
	held.letGo()
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`%s >= %d`, syncs, done+1))
	checkJS(t, ctx, frame+` === null`,
		"the plugin host's read of the installed plugins, answered before clock was disabled and read after the next read, started it again")
}

// TestBrowserPluginHostHeldSource: the plugin host has read clock enabled
// and is fetching its code when clock is disabled and marker enabled; the
// next sync reads that list and starts marker. Clock's code, coming last,
// must not start it.
func TestBrowserPluginHostHeldSource(t *testing.T) {
	checkGoroutines(t)
	installed := func(name string, on bool) plugins.Installed {
		return plugins.Installed{ID: md5.Sum([]byte(name)), Name: name, Version: "1.0", Permissions: []string{},
			Granted: []string{}, Publisher: fakeID("bravo"), PublisherName: "bravo", Enabled: on}
	}
	clock, marker := installed("clock", false), installed("marker", false)
	fp := &fakePlugins{installed: []plugins.Installed{clock, marker},
		sources: map[shards.MD5][]byte{clock.ID: []byte("// the clock"), marker.ID: []byte("// the marker")}}
	src := "/api/plugins/" + clock.ID.String() + "/source"
	ctx, holds := holdingPage(t, newFakeNode("alpha"), Config{Plugins: fp}, "en-US", "mesh", false, src)
	const wait = 10 * time.Second
	frame := func(p plugins.Installed) string {
		return `document.querySelector('iframe.plugin-frame[data-plugin="` + p.ID.String() + `"]')`
	}
	syncs := `Number(document.documentElement.dataset.pluginSyncs || 0)`
	// The host reads the list when it starts and when the stream opens.
	browsertest.Until(t, ctx, wait, syncs+` >= 2`)
	held := holds[src]
	held.arm()
	clock.Enabled = true
	fp.setInstalled(clock, marker)
	held.wait(t, wait) // that sync has read clock enabled and waits for its code

	clock.Enabled, marker.Enabled = false, true
	fp.setInstalled(clock, marker)
	browsertest.Until(t, ctx, wait, frame(marker)+` !== null`)
	done, err := chromedp.Run(ctx, chromedp.Evaluate[int](syncs))
	if err != nil {
		t.Fatal(err)
	}
	held.letGo()
	browsertest.Until(t, ctx, wait, fmt.Sprintf(`%s >= %d`, syncs, done+1))
	checkJS(t, ctx, frame(clock)+` === null && `+frame(marker)+` !== null`,
		"the plugin host, fetching clock's code when a later sync read clock disabled, started clock")
}
