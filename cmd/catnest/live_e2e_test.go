package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/internal/browsertest"
	"github.com/catnest/catnest/internal/testutil"
	"github.com/catnest/catnest/live"
	"github.com/catnest/catnest/mesh"
)

// whepViewer watches a room from a node's WHEP endpoint with a Go pion
// client, as any WHEP player would, and counts the RTP it gets.
func whepViewer(t *testing.T, ui, room string) func() uint64 {
	t.Helper()
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Uint64
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			n.Add(1)
		}
	})
	t.Cleanup(func() { pc.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
	}
	offer, _ := pc.CreateOffer(nil)
	done := webrtc.GatheringCompletePromise(pc)
	pc.SetLocalDescription(offer)
	<-done
	resp, err := http.Post(ui+"api/live/rooms/"+room+"/whep", "application/sdp", bytes.NewBufferString(pc.LocalDescription().SDP))
	if err != nil {
		t.Fatal(err)
	}
	ans, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP on %s: %s %s", ui, resp.Status, ans)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(ans)}); err != nil {
		t.Fatal(err)
	}
	return n.Load
}

// TestBrowserLiveChain: Chromium with a fake camera goes live on a, the
// room made with a title and a description; with fanout 1 the tree is the
// chain a → b → c; c's page shows the room in its index and plays the
// video (frames decoded keep rising) and the audio; a chat message from
// c's page reaches a's page; b is killed, c attaches to a and its page
// plays again without the viewer doing anything.
func TestBrowserLiveChain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ctx := browsertest.NewForWithFlags(t, 3*time.Minute, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		"--autoplay-policy=no-user-gesture-required", "--disable-features=WebRtcHideLocalIpsWithMdns")
	signalURL := startSignalProc(t)
	a := serveNode(t, signalURL, "a", t.TempDir(), "--live-fanout", "1")
	b := serveNode(t, signalURL, "b", t.TempDir(), "--live-fanout", "1")
	c := serveNode(t, signalURL, "c", t.TempDir(), "--live-fanout", "1")

	if err := chromedp.Do(ctx, chromedp.Navigate(a.ui+"#/live")); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, 30*time.Second, `document.querySelector("#live-title") !== null`)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		document.querySelector("#live-title").value = "camera room";
		document.querySelector("#live-desc").value = "a fake camera, three nodes";
		document.querySelector("#live-go").click();
		return true; })()`)); err != nil {
		t.Fatal(err)
	}
	var room live.Room
	testutil.WaitFor(t, 60*time.Second, "the room on b and c, live at a", func() bool {
		var rooms, atB []live.Room
		b.api(t, http.MethodGet, "api/live/rooms", nil, &atB)
		c.api(t, http.MethodGet, "api/live/rooms", nil, &rooms)
		if len(atB) != 1 {
			return false
		}
		var ti live.TreeInfo
		if len(rooms) == 1 {
			room = rooms[0]
			a.api(t, http.MethodGet, "api/live/rooms/"+room.ID+"/tree", nil, &ti)
		}
		return ti.Live
	})
	tree := func(n *servedNode) live.TreeInfo {
		var ti live.TreeInfo
		n.api(t, http.MethodGet, "api/live/rooms/"+room.ID+"/tree", nil, &ti)
		return ti
	}
	atB := whepViewer(t, b.ui, room.ID)
	testutil.WaitFor(t, 30*time.Second, "media at b's WHEP viewer", func() bool { return atB() > 50 })

	page, cancel := chromedp.NewContext(ctx)
	defer cancel()
	if err := chromedp.Do(page, chromedp.Navigate(c.ui+"#/live")); err != nil {
		t.Fatal(err)
	}
	cardSel := fmt.Sprintf(`#live-rooms .live-room[data-id=%q]`, room.ID)
	watchSel := cardSel + ` .live-watch`
	browsertest.Until(t, page, 30*time.Second, `document.querySelector('`+watchSel+`') !== null`)
	// The index on c's page shows the room as the host made it.
	browsertest.Until(t, page, 10*time.Second, `(() => { const c = document.querySelector('`+cardSel+`');
		return c.querySelector(".live-title").textContent === "camera room" && c.textContent.includes("a fake camera, three nodes"); })()`)
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { document.querySelector('`+watchSel+`').click(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	if ti := waitTree(t, tree, c, b.id); ti.Depth != 2 {
		t.Fatalf("c's tree %+v: want depth 2 under b", ti)
	}
	// videoState is what c's page plays: the video's size, the frames
	// and audio bytes decoded so far.
	type videoState struct {
		W      int     `json:"w"`
		Frames float64 `json:"frames"`
		Audio  float64 `json:"audio"`
		PC     string  `json:"pc"`
	}
	state := func() videoState {
		var vs videoState
		js, err := chromedp.Run(page, chromedp.Evaluate[string](`(async () => { const v = document.querySelector("#live-video");
			if (!v || !v.peer) return "{}";
			let audio = 0;
			(await v.peer.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "audio") audio = s.totalSamplesReceived; });
			return JSON.stringify({w: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames, audio, pc: v.peer.connectionState}); })()`,
			chromedp.EvalAwaitPromise))
		if err == nil {
			err = json.Unmarshal([]byte(js), &vs)
		}
		if err != nil {
			t.Logf("c's page: %v", err)
		}
		return vs
	}
	playing := func(what string) {
		t.Helper()
		start := state()
		var now videoState
		defer func() {
			if t.Failed() {
				t.Logf("c's page at the end: %+v (at the start %+v)", now, start)
			}
		}()
		testutil.WaitFor(t, 60*time.Second, what+": c's page decoding video and audio", func() bool {
			now = state()
			return now.W > 0 && now.Frames > start.Frames+30 && now.Audio > start.Audio+48000
		})
		t.Logf("%s: c's page plays %dpx wide video (%v frames) and audio (%v samples)", what, now.W, now.Frames-start.Frames, now.Audio-start.Audio)
	}
	playing("chain a → b → c")

	// Room chat: a message from the viewer's page on c reaches the host's
	// page on a.
	browsertest.Until(t, page, 30*time.Second, `document.querySelector(".live-chat form input") !== null`)
	if _, err := chromedp.Run(page, chromedp.Evaluate[bool](`(() => { const f = document.querySelector(".live-chat form");
		f.querySelector("input").value = "hello from c"; f.requestSubmit(); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Until(t, ctx, 60*time.Second, `[...document.querySelectorAll(".live-chat .live-messages li")].some((li) => li.textContent.includes("hello from c"))`)

	b.proc.cmd.Process.Kill()
	ti := waitTree(t, tree, c, a.id)
	if ti.Depth != 1 {
		t.Fatalf("c's tree after b left: %+v", ti)
	}
	playing("after b was killed")
}

// waitTree waits until n's parent in the room is parent.
func waitTree(t *testing.T, tree func(*servedNode) live.TreeInfo, n *servedNode, parent mesh.ID) live.TreeInfo {
	t.Helper()
	var ti live.TreeInfo
	testutil.WaitFor(t, 30*time.Second, "the parent of "+n.ui, func() bool {
		ti = tree(n)
		return ti.Parent == parent
	})
	return ti
}
