package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/internal/loopback"
	"github.com/catnest/catnest/webui"
)

// ChatConfig is what `catnest chat` runs.
type ChatConfig struct {
	// Node is the web address of a running node.
	Node string
	// Token is the node's web UI token, if it needs one. The API key
	// stands in for it, so it is needed only with a key from elsewhere.
	Token string
	// APIKey is the node's API key, which lets the command change things
	// without posing as the node's page; empty means the one in Data.
	APIKey string
	// Data is the node's data dir, where its API key is kept. Empty means
	// the default data dir, and only when Node is on this machine: the
	// key of a node here is not sent to a node elsewhere.
	Data string
	// Channel is a channel name or id.
	Channel string
	// History is how many past messages to show.
	History int
}

func parseChat(args []string, stderr io.Writer) (ChatConfig, error) {
	cfg := ChatConfig{}
	fs := newFlagSet("chat", "Chat in a channel from a terminal, through a running node: prints the\nhistory, then live messages; each line you type is sent. CHANNEL is a name or an id.\nUsage: catnest chat [flags] CHANNEL", stderr)
	fs.StringVar(&cfg.Node, "node", "http://"+webui.DefaultAddr, "web `URL` of the running node")
	fs.StringVar(&cfg.Token, "token", os.Getenv("CATNEST_TOKEN"), "the node's web UI `token`, if it has one (the API key stands in for it)")
	fs.StringVar(&cfg.APIKey, "api-key", os.Getenv("CATNEST_API_KEY"), "the node's API `key` (default $CATNEST_API_KEY, else the one in --data)")
	fs.StringVar(&cfg.Data, "data", "", "the node's data `dir`, to read its API key ("+webui.APIKeyFile+") from (default "+defaultDataDir()+" for a node on this machine)")
	fs.IntVar(&cfg.History, "history", 50, "past `messages` to show")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cfg, fmt.Errorf("chat: want one CHANNEL argument")
	}
	cfg.Channel = fs.Arg(0)
	u, err := url.Parse(cfg.Node)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cfg, fmt.Errorf("chat: --node %q: want an http URL such as http://127.0.0.1:7070", cfg.Node)
	}
	cfg.Node = u.Scheme + "://" + u.Host
	if cfg.History < 0 || cfg.History > 500 {
		return cfg, fmt.Errorf("chat: --history must be 0..500")
	}
	return cfg, nil
}

// apiKeyFor returns the API key to send to the node at node: key when
// given, else the one in the data dir data, else, for a node on this
// machine, the one in the default data dir.
func apiKeyFor(node, key, data string) (string, error) {
	if key != "" {
		return key, nil
	}
	if data == "" {
		// The default data dir holds the key of the node on this
		// machine: sending it to another would give that one's owner
		// the key (and fail there).
		if u, err := url.Parse(node); err != nil || !loopback.IsHost(u.Hostname()) {
			return "", fmt.Errorf("%s is not on this machine: give its API key (--api-key or $CATNEST_API_KEY), which its catnest serve prints, or its data dir (--data)", node)
		}
		data = defaultDataDir()
	}
	key, err := webui.ReadAPIKey(data)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no API key in %s: give the node's data dir (--data) or its key (--api-key), which catnest serve prints", data)
	}
	return key, err
}

// chatClient talks to a node's HTTP API.
type chatClient struct {
	cfg  ChatConfig
	http *http.Client
}

func (c *chatClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.cfg.Node+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c.auth(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the node at %s (is `catnest serve` running?): %w", c.cfg.Node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return fmt.Errorf("%s %s: %s", method, path, e.Error)
	}
	if out != nil {
		return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out)
	}
	return nil
}

// auth adds the API key, which lets a script change things without an
// Origin, and the token if there is one.
func (c *chatClient) auth(req *http.Request) {
	req.Header.Set(webui.APIKeyHeader, c.cfg.APIKey)
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
}

// findChannel resolves a name or id, joining the channel if needed.
func (c *chatClient) findChannel(ctx context.Context) (webui.Channel, error) {
	var chs []webui.Channel
	if err := c.do(ctx, http.MethodGet, "/api/channels", nil, &chs); err != nil {
		return webui.Channel{}, err
	}
	var match []webui.Channel
	for _, ch := range chs {
		if ch.ID == c.cfg.Channel || ch.Name == c.cfg.Channel {
			match = append(match, ch)
		}
	}
	switch {
	case len(match) == 0:
		return webui.Channel{}, fmt.Errorf("no channel %q among the %d the node knows", c.cfg.Channel, len(chs))
	case len(match) > 1:
		// Prefer the joined one; else ask for an id.
		var joined []webui.Channel
		for _, m := range match {
			if m.Joined {
				joined = append(joined, m)
			}
		}
		if len(joined) != 1 {
			ids := make([]string, len(match))
			for i, m := range match {
				ids[i] = m.ID + " (owner " + termText(m.OwnerName, false) + ")"
			}
			return webui.Channel{}, fmt.Errorf("%d channels are named %q; give an id: %s", len(match), c.cfg.Channel, strings.Join(ids, ", "))
		}
		match = joined
	}
	ch := match[0]
	if !ch.Joined {
		if err := c.do(ctx, http.MethodPost, "/api/channels/"+ch.ID+"/join", nil, nil); err != nil {
			return ch, err
		}
		ch.Joined = true
	}
	return ch, nil
}

// printer writes messages once each, in a fixed form.
type printer struct {
	mu   sync.Mutex
	out  io.Writer
	head headerStyle
	seen map[string]bool
}

func (p *printer) message(m webui.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[m.ID] {
		return
	}
	p.seen[m.ID] = true
	fmt.Fprint(p.out, messageLine(m, p.head))
}

// messageLine is how a message shows in the terminal: one line, or a first
// line and continuation lines that start with contLine, and nothing a
// terminal would act on (see termText). The line's head, "[time] author:",
// is framed by head.
func messageLine(m webui.Message, head headerStyle) string {
	text := termText(m.Text, true)
	if m.Retracted {
		text = "(retracted)"
	}
	mark := ""
	if m.Marked {
		mark = " *"
	}
	author := m.AuthorName
	if m.Guest != "" {
		// The node's word for what its guest said, not the node's own.
		author = m.Guest + " (guest of " + author + ")"
	}
	return fmt.Sprintf("%s[%s] %s:%s %s%s\n", head.start, m.Time.Local().Format("01-02 15:04"), termText(author, false), head.end(), text, mark)
}

func (p *printer) line(format string, a ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.out, format+"\n", a...)
}

// RunChat runs `catnest chat`: history, then live messages and sending
// until stdin ends, the node's event stream ends, or ctx does. It closes
// stdin, when it is an io.Closer, before it returns, so that its reader
// goroutine ends (a pipe's read ends at once; a read from a terminal in
// blocking mode, as os.Stdin usually is, ends only with the next line or
// the process).
func RunChat(ctx context.Context, cfg ChatConfig, stdin io.Reader, stdout io.Writer) error {
	if c, ok := stdin.(io.Closer); ok {
		defer c.Close()
	}
	key, err := apiKeyFor(cfg.Node, cfg.APIKey, cfg.Data)
	if err != nil {
		return err
	}
	cfg.APIKey = key
	c := &chatClient{cfg: cfg, http: &http.Client{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := c.findChannel(ctx)
	if err != nil {
		return err
	}
	p := &printer{out: stdout, head: headerStyleFor(stdout), seen: map[string]bool{}}
	burn := ""
	if ch.Burn {
		burn = " (burn after read: messages are not kept)"
	}
	p.line("# %s%s — type a line to send, Ctrl-D to quit", termText(ch.Name, false), burn)
	if cfg.History > 0 {
		var ms []webui.Message
		if err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/channels/%s/messages?limit=%d", ch.ID, cfg.History), nil, &ms); err != nil {
			return err
		}
		for _, m := range ms {
			p.message(m)
		}
	}
	live := make(chan error, 1)
	var following sync.WaitGroup
	following.Go(func() { live <- c.follow(ctx, ch.ID, p) })
	// Nothing is printed after RunChat returns.
	defer following.Wait()
	defer cancel()

	// A line longer than a message may be is read whole, so that the
	// node says why it is not sent; one much longer ends the input.
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 0, 64<<10), maxInputLine)
	lines := make(chan string)
	go func() {
		defer close(lines)
		for in.Scan() {
			select {
			case lines <- in.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				// lines is closed after the last Scan: in.Err is set.
				if err := in.Err(); err != nil {
					return fmt.Errorf("reading what you type: %w (a line may hold at most %d bytes)", err, maxInputLine)
				}
				return nil
			}
			if strings.TrimSpace(l) == "" {
				continue
			}
			var m webui.Message
			if err := c.do(ctx, http.MethodPost, "/api/channels/"+ch.ID+"/messages", map[string]string{"text": l}, &m); err != nil {
				p.line("! not sent: %s", termText(err.Error(), false))
				continue
			}
			p.message(m)
		case err := <-live:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("lost the node's event stream: %w", err)
		case <-ctx.Done():
			return nil
		}
	}
}

// maxInputLine bounds a line of input: a few times the longest message.
const maxInputLine = 4 * chatlog.MaxBody

// catchUpLimit is how many of the newest messages catchUp fetches: the
// most GET .../messages returns.
const catchUpLimit = 500

// catchUp prints the channel's newest messages that have not been shown.
func (c *chatClient) catchUp(ctx context.Context, channel string, p *printer) error {
	var ms []webui.Message
	if err := c.do(ctx, http.MethodGet, fmt.Sprintf("/api/channels/%s/messages?limit=%d", channel, catchUpLimit), nil, &ms); err != nil {
		return fmt.Errorf("catch up after dropped events: %w", err)
	}
	for _, m := range ms {
		p.message(m)
	}
	return nil
}

// follow prints the channel's live messages from the node's event stream.
func (c *chatClient) follow(ctx context.Context, channel string, p *printer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Node+"/api/events", nil)
	if err != nil {
		return err
	}
	c.auth(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("events: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:") && event == "chat":
			var e webui.ChatEvent
			if json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, "data:"))), &e) != nil {
				continue
			}
			switch {
			case e.Type == "resync":
				// The node dropped events because we fell behind (a
				// burst, or a terminal paused with Ctrl-S); it names no
				// channel. Fetch what we missed.
				if err := c.catchUp(ctx, channel, p); err != nil && ctx.Err() == nil {
					p.line("! %s", termText(err.Error(), false))
				}
			case e.Channel != channel:
			case e.Type == "message" && e.Message != nil:
				p.message(*e.Message)
			case e.Type == "retract":
				p.line("  (a message was retracted)")
			}
		case line == "":
			event = ""
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.EOF
}
