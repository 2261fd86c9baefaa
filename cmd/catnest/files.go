package main

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/catnest/catnest/internal/loopback"
	"github.com/catnest/catnest/shards"
	"github.com/catnest/catnest/webui"
)

// NodeFlags say how to reach a running node's API: what `catnest share`
// and `catnest get` need, as `catnest chat` does.
type NodeFlags struct {
	// Node is the web address of a running node.
	Node string
	// Token is the node's web UI token, if it needs one.
	Token string
	// APIKey is the node's API key; empty means the one in Data.
	APIKey string
	// Data is the node's data dir, where its API key is kept; empty
	// means the default one, for a node on this machine only.
	Data string
}

func (n *NodeFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&n.Node, "node", "http://"+webui.DefaultAddr, "web `URL` of the running node")
	fs.StringVar(&n.Token, "token", os.Getenv("CATNEST_TOKEN"), "the node's web UI `token`, if it has one (the API key stands in for it)")
	fs.StringVar(&n.APIKey, "api-key", os.Getenv("CATNEST_API_KEY"), "the node's API `key` (default $CATNEST_API_KEY, else the one in --data)")
	fs.StringVar(&n.Data, "data", "", "the node's data `dir`, to read its API key ("+webui.APIKeyFile+") from (default "+defaultDataDir()+" for a node on this machine)")
}

// check normalises Node to scheme://host.
func (n *NodeFlags) check(cmd string) error {
	u, err := url.Parse(n.Node)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: --node %q: want an http URL such as http://127.0.0.1:7070", cmd, n.Node)
	}
	n.Node = u.Scheme + "://" + u.Host
	return nil
}

// client returns a client of the node's API with the API key resolved.
func (n NodeFlags) client() (*chatClient, error) {
	key, err := apiKeyFor(n.Node, n.APIKey, n.Data)
	if err != nil {
		return nil, err
	}
	return &chatClient{cfg: ChatConfig{Node: n.Node, Token: n.Token, APIKey: key}, http: &http.Client{}}, nil
}

// ShareConfig is what `catnest share` runs.
type ShareConfig struct {
	NodeFlags
	// Path is the file to share, absolute.
	Path string
}

func parseShare(args []string, stderr io.Writer) (ShareConfig, error) {
	cfg := ShareConfig{}
	fs := newFlagSet("share", "Share one more file through a running node and print its link, which\n`catnest get` or another node's web UI downloads. The file is served in place, never copied.\nUsage: catnest share [flags] PATH", stderr)
	cfg.NodeFlags.add(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cfg, fmt.Errorf("share: want one PATH argument")
	}
	if err := cfg.check("share"); err != nil {
		return cfg, err
	}
	p, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return cfg, fmt.Errorf("share: %w", err)
	}
	cfg.Path = p
	return cfg, nil
}

// RunShare runs `catnest share`: it prints the link on stdout.
func RunShare(ctx context.Context, cfg ShareConfig, stdout io.Writer) error {
	// The path is the node's: check it here only when the node runs here.
	if u, err := url.Parse(cfg.Node); err == nil && loopback.IsHost(u.Hostname()) {
		fi, err := os.Stat(cfg.Path)
		if err != nil {
			return fmt.Errorf("share: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("share: %s is not a regular file (to share a folder, start the node with --share DIR)", cfg.Path)
		}
	}
	c, err := cfg.client()
	if err != nil {
		return err
	}
	var t shards.Transfer
	if err := c.do(ctx, http.MethodPost, "/api/shards", map[string]string{"path": cfg.Path}, &t); err != nil {
		return fmt.Errorf("share: %w", err)
	}
	fmt.Fprintln(stdout, t.Link)
	return nil
}

// GetConfig is what `catnest get` runs.
type GetConfig struct {
	NodeFlags
	// Link names the resource; a Link with only an ID (LINK given as an
	// MD5) is fetched from whatever the catalogs say holds it.
	Link shards.Link
	// Dir is where the file is saved.
	Dir string
}

func parseGet(args []string, stderr io.Writer) (GetConfig, error) {
	cfg := GetConfig{}
	fs := newFlagSet("get", "Download a file through a running node, from every node that has it, with a\nprogress bar; when it is complete, save it in DIR. LINK is a webrtc:// link, or\nthe file's MD5 as the Files view lists it.\nUsage: catnest get [flags] LINK", stderr)
	cfg.NodeFlags.add(fs)
	fs.StringVar(&cfg.Dir, "o", ".", "`DIR` to save the file in")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cfg, fmt.Errorf("get: want one LINK argument")
	}
	if err := cfg.check("get"); err != nil {
		return cfg, err
	}
	if id, err := shards.ParseMD5(fs.Arg(0)); err == nil {
		// The API takes an id alone; so does get.
		cfg.Link = shards.Link{ID: id}
	} else if l, err := shards.ParseLink(fs.Arg(0)); err != nil {
		return cfg, fmt.Errorf("get: %w (a link looks like webrtc://NODE@HOST:PORT/files/MD5?m=…&n=NAME&s=SIZE, or give the file's MD5)", err)
	} else {
		cfg.Link = l
	}
	fi, err := os.Stat(cfg.Dir)
	if err != nil {
		return cfg, fmt.Errorf("get: -o: %w", err)
	}
	if !fi.IsDir() {
		return cfg, fmt.Errorf("get: -o %s is not a directory", cfg.Dir)
	}
	return cfg, nil
}

// complete reports whether a transfer's bytes are all on the node.
func complete(t shards.Transfer) bool {
	return t.State == shards.StateDone || t.State == shards.StateSeeding
}

// RunGet runs `catnest get`: fetch, follow the progress, then copy the
// file out of the node into cfg.Dir.
func RunGet(ctx context.Context, cfg GetConfig, stdout io.Writer) error {
	c, err := cfg.client()
	if err != nil {
		return err
	}
	// The event stream ends once the transfer is complete; ctx itself
	// (Ctrl-C) still stops the copy that follows.
	evCtx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	// Listen before fetching, so that no event is missed.
	evs, err := c.shardsEvents(evCtx)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	var t shards.Transfer
	req := map[string]string{"link": cfg.Link.String()}
	if cfg.Link.Node == "" {
		req = map[string]string{"id": cfg.Link.ID.String()}
	}
	// A node on this machine saves the file in DIR itself and seeds it
	// from there: one copy on disk, and nothing to copy at the end. A
	// remote node's paths are not ours.
	if u, err := url.Parse(cfg.Node); err == nil && loopback.IsHost(u.Hostname()) {
		if dir, err := filepath.Abs(cfg.Dir); err == nil {
			req["dir"] = dir
		}
	}
	err = c.do(ctx, http.MethodPost, "/api/shards/fetch", req, &t)
	if err != nil && req["dir"] != "" && strings.Contains(err.Error(), shards.ErrBadDir.Error()) {
		// The node runs as another user, or in a sandbox: it keeps the
		// file in its downloads folder and get copies it out, as it does
		// for a remote node.
		fmt.Fprintf(stdout, "the node cannot save into %s (%s); it keeps the file in its own downloads folder and get copies it here\n",
			termText(req["dir"], false), termText(err.Error(), false))
		delete(req, "dir")
		err = c.do(ctx, http.MethodPost, "/api/shards/fetch", req, &t)
	}
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	bar := newProgressBar(stdout, t.Name, time.Now())
	for !complete(t) {
		if t.State == shards.StateFailed {
			bar.end()
			return fmt.Errorf("get: the download failed: %s", termText(cmpOr(t.Error, "no reason given"), false))
		}
		bar.update(t, time.Now())
		select {
		case <-ctx.Done():
			bar.end()
			return fmt.Errorf("get: interrupted; the node goes on downloading (%s): run the same command again to save the file", t.State)
		case ev, ok := <-evs:
			switch {
			case !ok:
				bar.end()
				if ctx.Err() != nil {
					return fmt.Errorf("get: interrupted; the node goes on downloading (%s): run the same command again to save the file", t.State)
				}
				// The node stopped or restarted (its data dir keeps
				// every verified piece): say what to do, not only what
				// broke.
				return fmt.Errorf("get: the node at %s closed its event stream (did it stop?); it resumes the download when it runs again: run the same command again", c.cfg.Node)
			case ev.resync:
				if got, err := c.transfer(ctx, t.ID); err == nil {
					t = got
				} else if ctx.Err() == nil {
					bar.end()
					return fmt.Errorf("get: %w", err)
				}
			case ev.Removed != nil && *ev.Removed == t.ID:
				bar.end()
				return fmt.Errorf("get: the download was cancelled on the node")
			case ev.Transfer != nil && ev.Transfer.ID == t.ID:
				t = *ev.Transfer
			}
		}
	}
	bar.update(t, time.Now())
	bar.end()
	stopEvents()
	if inDir(t, cfg.Dir) {
		// The node saved it here (and checked its MD5): nothing to copy.
		fmt.Fprintf(stdout, "saved %s (%s)\n", termText(t.Path, false), formatBytes(float64(t.Size)))
		return nil
	}
	path, err := c.save(ctx, t, cfg.Link, cfg.Dir, stdout)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("get: interrupted while saving the file; nothing saved (the node keeps it): run the same command again")
		}
		return fmt.Errorf("get: %w", err)
	}
	fmt.Fprintf(stdout, "saved %s (%s)\n", termText(path, false), formatBytes(float64(t.Size)))
	return nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// shardsEvent is one "shards" event, or a resync.
type shardsEvent struct {
	shards.Event
	resync bool
}

// shardsEvents opens the node's event stream and returns its "shards"
// events; the channel closes when the stream ends or ctx does.
func (c *chatClient) shardsEvents(ctx context.Context) (<-chan shardsEvent, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Node+"/api/events", nil)
	if err != nil {
		return nil, err
	}
	c.auth(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the node at %s (is `catnest serve` running?): %w", c.cfg.Node, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("events: %s", resp.Status)
	}
	out := make(chan shardsEvent, 16)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event:"):
				event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:") && event == "shards":
				data := []byte(strings.TrimSpace(strings.TrimPrefix(line, "data:")))
				var ev shardsEvent
				var r webui.ShardsResync
				if json.Unmarshal(data, &r) == nil && r.Resync {
					ev.resync = true
				} else if json.Unmarshal(data, &ev.Event) != nil {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case line == "":
				event = ""
			}
		}
	}()
	return out, nil
}

// transfer reads one transfer from the node's list.
func (c *chatClient) transfer(ctx context.Context, id shards.MD5) (shards.Transfer, error) {
	var ts []shards.Transfer
	if err := c.do(ctx, http.MethodGet, "/api/shards", nil, &ts); err != nil {
		return shards.Transfer{}, err
	}
	for _, t := range ts {
		if t.ID == id {
			return t, nil
		}
	}
	return shards.Transfer{}, fmt.Errorf("the node no longer lists the download")
}

// inDir reports whether a finished transfer's file is in dir already,
// whole: the node saved it there (Link.Dir), or a download of it that the
// node had saved there before.
func inDir(t shards.Transfer, dir string) bool {
	if t.State != shards.StateDone || t.Path == "" {
		return false
	}
	fi, err := os.Stat(t.Path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != t.Size {
		return false
	}
	a, err1 := os.Stat(filepath.Dir(t.Path))
	b, err2 := os.Stat(dir)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// saveName is the name to save a resource under: the link's, else the
// node's, else its id; always one plain element (shards.CleanName), so it
// stays in the folder.
func saveName(t shards.Transfer, l shards.Link) string {
	for _, n := range []string{l.Name, t.Name} {
		if n, err := shards.CleanName(n); err == nil && n != "" && !strings.HasPrefix(n, ".") {
			return n
		}
	}
	return t.ID.String()
}

// freeName returns name, or "base (k).ext" for the first k that is not
// taken in root.
func freeName(root *os.Root, name string) (string, error) {
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for k := 0; k < 1000; k++ {
		n := name
		if k > 0 {
			n = fmt.Sprintf("%s (%d)%s", base, k, ext)
		}
		if _, err := root.Lstat(n); errors.Is(err, os.ErrNotExist) {
			return n, nil
		}
	}
	return "", fmt.Errorf("%s and 999 numbered names are taken", name)
}

// save copies the resource out of the node into dir, through os.Root so
// that nothing is written outside dir (not even through a symlink), and
// checks the copy against the resource's MD5 before giving it its name.
func (c *chatClient) save(ctx context.Context, t shards.Transfer, l shards.Link, dir string, stdout io.Writer) (string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	name, err := freeName(root, saveName(t, l))
	if err != nil {
		return "", err
	}
	// A name of its own, short whatever the file's name (which may take
	// all of NAME_MAX) and never shared with another get into dir.
	tmp := ".catnest-" + rand.Text()[:16] + ".part"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			root.Remove(tmp)
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Node+"/api/shards/"+t.ID.String()+"/content", nil)
	if err != nil {
		return "", err
	}
	c.auth(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return "", fmt.Errorf("copy from the node: %s %s", resp.Status, termText(e.Error, false))
	}
	sum := md5.New()
	// A copy of a GiB takes seconds: it has a bar of its own, not a
	// silence after "100% done".
	bar := newProgressBar(stdout, "saving "+name, time.Now())
	prog := &copyProgress{bar: bar, t: shards.Transfer{ID: t.ID, Size: t.Size, State: shards.StateDownloading}}
	n, err := io.Copy(io.MultiWriter(f, sum, prog), resp.Body)
	bar.end()
	if err != nil {
		return "", fmt.Errorf("copy from the node: %w", err)
	}
	if got := shards.MD5(sum.Sum(nil)); n != t.Size || got != t.ID {
		return "", fmt.Errorf("the copy from the node is %d bytes with MD5 %s; want %d bytes with MD5 %s (nothing saved)", n, got, t.Size, t.ID)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := root.Rename(tmp, name); err != nil {
		return "", err
	}
	ok = true
	return filepath.Join(dir, name), nil
}

// copyProgress draws a bar of the bytes written through it.
type copyProgress struct {
	bar *progressBar
	t   shards.Transfer
}

func (p *copyProgress) Write(b []byte) (int, error) {
	p.t.Have += int64(len(b))
	p.bar.update(p.t, time.Now())
	return len(b), nil
}

// progressBar draws a transfer's progress: on a terminal one line redrawn
// in place a few times a second; else a plain line every tenth of the way
// or every ten seconds, for logs.
type progressBar struct {
	out      io.Writer
	tty      bool
	name     string
	start    time.Time
	last     time.Time // last drawn
	lastTick int       // tenths of the way last printed (not a terminal)
	drawn    bool
	// doneDrawn: the line saying "done" was printed; a log that ended at
	// "100% … ETA 0:00" left it unsaid whether the node had checked the
	// whole file.
	doneDrawn bool
	// The rate measured here, for a node that reports none.
	prevHave int64
	prevAt   time.Time
	rate     float64
}

func newProgressBar(out io.Writer, name string, now time.Time) *progressBar {
	return &progressBar{out: out, tty: isTerminal(out), name: termText(name, false), start: now, lastTick: -1, prevAt: now}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progressBar) update(t shards.Transfer, now time.Time) {
	if dt := now.Sub(p.prevAt).Seconds(); dt >= 0.5 {
		r := float64(t.Have-p.prevHave) / dt
		if p.rate == 0 {
			p.rate = r
		} else {
			p.rate = 0.7*p.rate + 0.3*r
		}
		p.prevHave, p.prevAt = t.Have, now
	}
	rate := t.Rate
	if rate <= 0 {
		rate = p.rate
	}
	tick := 10
	if t.Size > 0 {
		tick = int(10 * shownBytes(t) / t.Size)
	}
	line := progressLine(p.name, t, rate, p.tty)
	switch {
	case p.tty:
		if p.drawn && now.Sub(p.last) < 100*time.Millisecond && !complete(t) {
			return
		}
		fmt.Fprintf(p.out, "\r%s\x1b[K", line)
	default:
		if tick == p.lastTick && now.Sub(p.last) < 10*time.Second && (!complete(t) || p.doneDrawn) {
			return
		}
		p.doneDrawn = complete(t)
		fmt.Fprintln(p.out, line)
		p.lastTick = tick
	}
	p.drawn, p.last = true, now
}

// end leaves the bar's line, so that what follows starts on a line of its
// own.
func (p *progressBar) end() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.out)
	}
	p.drawn = false
}

// barWidth is the width of the bar of a terminal progress line.
const barWidth = 24

// progressLine is one line of progress: "name [=====>    ]  42%  4.2 MiB
// of 10 MiB  1.3 MiB/s  ETA 0:05".
func progressLine(name string, t shards.Transfer, rate float64, bar bool) string {
	frac := 1.0
	if t.Size > 0 {
		frac = min(1, float64(shownBytes(t))/float64(t.Size))
	} else if !complete(t) {
		frac = 0
	}
	var b strings.Builder
	b.WriteString(name)
	if bar {
		n := int(frac * barWidth)
		b.WriteString(" [")
		b.WriteString(strings.Repeat("=", n))
		if n < barWidth {
			b.WriteString(">")
			b.WriteString(strings.Repeat(" ", barWidth-n-1))
		}
		b.WriteString("]")
	}
	if t.Size == 0 && !complete(t) {
		// No manifest yet (a link without a size, an id): "100%  0 B
		// of 0 B" said it was complete.
		fmt.Fprintf(&b, "    ?%%  %s of ?", formatBytes(float64(t.Have)))
	} else {
		fmt.Fprintf(&b, " %3d%%  %s of %s", int(frac*100), formatBytes(float64(shownBytes(t))), formatBytes(float64(t.Size)))
	}
	switch {
	case complete(t):
		b.WriteString("  done")
	case checking(t):
		// The bar is the check's: a file saved before is read and
		// checked rather than fetched again.
		fmt.Fprintf(&b, "  checking the file already saved (%s)", termText(filepath.Base(t.Checking), false))
	case t.State == shards.StatePaused:
		b.WriteString("  paused on the node")
	case t.Waiting == shards.WaitNoHolder:
		// Without it the line said "0 B/s ETA --:--" for as long as the
		// holders stay offline, and nothing of why.
		b.WriteString("  waiting: no node that has it is online")
	case t.Waiting != "":
		b.WriteString("  waiting for a holder to answer")
	default:
		fmt.Fprintf(&b, "  %s/s  ETA %s", formatBytes(rate), formatETA(float64(t.Size-t.Have), rate))
	}
	return b.String()
}

// checking reports whether a download checks a file already saved
// (Transfer.Checking) rather than fetch.
func checking(t shards.Transfer) bool {
	return t.Checking != "" && t.State == shards.StateDownloading
}

// shownBytes is what the bar shows of a transfer: the bytes verified, or
// while it checks a saved file, those of it checked.
func shownBytes(t shards.Transfer) int64 {
	if checking(t) {
		return t.Checked
	}
	return t.Have
}

// formatBytes shows a size with binary units: "1.5 MiB".
func formatBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", int64(n))
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// formatETA is the time left at rate, as h:mm:ss or m:ss; "--:--" when
// it cannot be told.
func formatETA(left, rate float64) string {
	if rate <= 0 || left < 0 {
		return "--:--"
	}
	s := int64(left/rate + 0.5)
	if s >= 100*3600 {
		return "--:--"
	}
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
