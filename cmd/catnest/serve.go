package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/catnest/catnest/chatlog"
	"github.com/catnest/catnest/guest"
	"github.com/catnest/catnest/internal/loopback"
	"github.com/catnest/catnest/live"
	"github.com/catnest/catnest/live/calls"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/signal"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/plugins"
	"github.com/catnest/catnest/shards"
	"github.com/catnest/catnest/subsonic"
	"github.com/catnest/catnest/webui"
)

func newLogger(verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// node is one running node with its services and web UI.
type node struct {
	mesh *mesh.Node
	db   *bbolt.DB
	chat *chatlog.Service
	// files shares files and runs downloads and pushes.
	files *shards.Service
	// music makes the mesh-wide library of the --music folders' tracks
	// and those of every online node; a node without music folders plays
	// the others'.
	music *music.Service
	// plugins publishes, installs and lists the market's plugins.
	plugins *plugins.Service
	// calls runs the 1v1 call rooms of the web UI's Call view.
	calls *calls.Service
	// live hosts, relays and plays live rooms.
	live *live.Service
	ui   *webui.Server
	ln   net.Listener
	url  string // the web UI, with the token when one is needed
	// apiKey lets scripts and `catnest chat` use the web UI's API.
	apiKey string

	// subsonic answers Subsonic music apps at /rest from the library.
	subsonic *subsonic.Service
}

// DBFile is the node's database inside its data dir; each service owns
// its own top-level buckets.
const DBFile = "catnest.db"

// openDB opens the node's database, failing fast when another catnest
// holds it.
func openDB(dir string) (*bbolt.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, DBFile)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%s is in use: is another catnest running with --data %s?", path, dir)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// newNode builds a node and its web UI from cfg and binds the UI's port.
func newNode(cfg ServeConfig, log *slog.Logger) (*node, error) {
	ident, err := mesh.LoadOrCreateIdentity(cfg.Data)
	if err != nil {
		return nil, err
	}
	mcfg := mesh.DefaultConfig()
	mcfg.Identity = ident
	mcfg.Name = cfg.Name
	mcfg.SignalURL = cfg.SignalURL
	mcfg.SignalKey = cfg.SignalKey
	mcfg.Bootstrap = cfg.Bootstrap
	mcfg.ICEServers = cfg.ICEServers
	mcfg.RTC.LoopbackOnly = cfg.LoopbackOnly
	mcfg.MaxGuests = cfg.MaxGuests
	mcfg.Logger = log
	if testMeshConfig != nil {
		testMeshConfig(&mcfg)
	}
	mn, err := mesh.NewNode(mcfg)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("--http %q: %w", cfg.HTTP, err)
	}
	db, err := openDB(cfg.Data)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			db.Close()
		}
	}()
	store, err := chatlog.OpenStore(db)
	if err != nil {
		return nil, err
	}
	ccfg := chatlog.DefaultServiceConfig()
	ccfg.Identity = ident
	ccfg.Logger = log
	chat, err := chatlog.NewService(ccfg, mn, store)
	if err != nil {
		return nil, err
	}
	if cfg.MaxGuests > 0 {
		gs, err := guest.NewService(guest.Config{Chat: chat, AllowPost: cfg.Guests, Logger: log})
		if err != nil {
			return nil, err
		}
		mn.HandleGuests(gs.Handle)
	}
	token := cfg.Token
	if token == "" && !loopback.IsHost(host) {
		token = rand.Text()
	}
	apiKey, err := webui.LoadOrCreateAPIKey(cfg.Data)
	if err != nil {
		return nil, err
	}
	files, err := newFiles(cfg, mn, db, log)
	if err != nil {
		return nil, err
	}
	mucfg := music.DefaultConfig()
	mucfg.Shards = files
	mucfg.Node = mn
	mucfg.DB = db
	mucfg.Dir = cfg.Data
	_, mucfg.Folders = sharedFolders(cfg.Shares, cfg.Music)
	mucfg.CacheLimit = cfg.MusicCache
	mucfg.Logger = log
	mus, err := music.New(mucfg)
	if err != nil {
		return nil, err
	}
	pcfg := plugins.DefaultConfig()
	pcfg.Node = mn
	pcfg.Shards = files
	pcfg.Identity = ident
	pcfg.DB = db
	pcfg.Dir = cfg.Data
	pcfg.Logger = log
	plug, err := plugins.New(pcfg)
	if err != nil {
		return nil, err
	}
	callCfg := calls.DefaultConfig()
	callCfg.Node, callCfg.Identity, callCfg.Logger = mn, ident, log
	// Pages get the node's STUN and TURN servers, so that --turn relays
	// calls that cannot connect directly.
	callCfg.ICEServers = func() []webrtc.ICEServer { return cfg.ICEServers }
	callSvc, err := calls.New(callCfg)
	if err != nil {
		return nil, err
	}
	sub, err := newSubsonic(cfg, mus, db, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			sub.Close()
		}
	}()
	lv, err := newLive(cfg, mn, ident, log)
	if err != nil {
		return nil, err
	}
	ui, err := webui.New(webui.Config{
		Addr:     cfg.HTTP,
		Token:    token,
		APIKey:   apiKey,
		Logger:   log,
		Chat:     chat,
		Members:  chat,
		Files:    files,
		Music:    mus,
		Plugins:  plug,
		Calls:    callSvc,
		Subsonic: sub,
		Live:     lv,
	}, mn)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("web UI: %w", err)
	}
	u := url.URL{Scheme: "http", Host: displayHost(ln.Addr()), Path: "/"}
	if token != "" {
		u.RawQuery = url.Values{"token": {token}}.Encode()
	}
	ok = true
	return &node{mesh: mn, db: db, chat: chat, files: files, music: mus, plugins: plug, calls: callSvc, subsonic: sub, live: lv, ui: ui, ln: ln, url: u.String(), apiKey: apiKey}, nil
}

// newSubsonic makes the node's Subsonic API over its music library, and
// keeps the login given on the command line.
func newSubsonic(cfg ServeConfig, mus *music.Service, db *bbolt.DB, log *slog.Logger) (*subsonic.Service, error) {
	scfg := subsonic.DefaultConfig()
	scfg.Music, scfg.DB, scfg.Logger = mus, db, log
	sub, err := subsonic.New(scfg)
	if err != nil {
		return nil, err
	}
	if cfg.SubsonicUser != "" {
		if err := sub.SetCredentials(context.Background(), cfg.SubsonicUser, cfg.SubsonicPassword); err != nil {
			sub.Close()
			return nil, fmt.Errorf("--subsonic-user: %w", err)
		}
	}
	return sub, nil
}

// The web UI's Subsonic API is the subsonic service.
var _ webui.Subsonic = (*subsonic.Service)(nil)

// testMeshConfig, set only by this package's tests (in the test binary
// that runs as catnest), adjusts each node's mesh config: the end-to-end
// tests shorten the directory's record timers so that a stopped node
// leaves the others' directory in seconds rather than after RecordTTL's
// minute. Always nil in catnest itself.
var testMeshConfig func(*mesh.Config)

// The web UI's files API is the shards service.
var _ webui.Files = (*shards.Service)(nil)

// The web UI's live API is the live service.
var _ webui.Live = (*live.Service)(nil)

// testLiveConfig, set only by this package's tests, adjusts each node's
// live config (shorter timers). Always nil in catnest itself.
var testLiveConfig func(*live.Config)

// newLive makes the node's live rooms service; its media connections use
// the node's ICE servers.
func newLive(cfg ServeConfig, mn *mesh.Node, ident *mesh.Identity, log *slog.Logger) (*live.Service, error) {
	lc := live.DefaultConfig()
	lc.Identity = ident
	if cfg.LiveFanout > 0 {
		lc.Fanout = cfg.LiveFanout
	}
	if cfg.LiveMaxViewers > 0 {
		lc.MaxViewers = cfg.LiveMaxViewers
	}
	lc.ICEServers = cfg.ICEServers
	lc.LoopbackOnly = cfg.LoopbackOnly
	lc.Logger = log
	if testLiveConfig != nil {
		testLiveConfig(&lc)
	}
	return live.NewService(lc, mn)
}

// The web UI's music API is the music service.
var _ webui.Music = (*music.Service)(nil)

// The web UI's plugins API is the plugins service.
var _ webui.Plugins = (*plugins.Service)(nil)

// newFiles makes the node's shards service: it keeps its records in the
// node's database and its downloads under the data dir, and writes the
// rendezvous into the links it makes, so that a link tells where to find
// the node.
func newFiles(cfg ServeConfig, mn *mesh.Node, db *bbolt.DB, log *slog.Logger) (*shards.Service, error) {
	rv, err := rendezvousHost(cfg.SignalURL)
	if err != nil {
		return nil, err
	}
	scfg := shards.DefaultConfig()
	scfg.Node = mn
	scfg.DB = db
	scfg.Dir = cfg.Data
	// The music folders are shared too: music takes each file's MD5
	// from shards, which hashes it once.
	scfg.Folders, _ = sharedFolders(cfg.Shares, cfg.Music)
	scfg.Rendezvous = rv
	scfg.UploadRate = cfg.UploadRate
	scfg.Push = shards.DefaultPushConfig()
	// A push writes a file into the data dir unasked, so it is taken only
	// from nodes the user named. Members of the chat channels this node
	// joined are not enough: a channel's members are whoever advertises
	// it, and anyone who learns an open channel's id can.
	if len(cfg.AcceptPush) > 0 {
		scfg.Push.Accept = shards.AcceptFrom(cfg.AcceptPush...)
	}
	scfg.Logger = log
	return shards.New(scfg)
}

// rendezvousHost is the host:port of a rendezvous URL, as links carry it;
// a URL without a port gets its scheme's.
func rendezvousHost(signalURL string) (string, error) {
	if signalURL == "" {
		return "", nil
	}
	u, err := url.Parse(signalURL)
	if err != nil {
		return "", fmt.Errorf("--signal %q: %w", signalURL, err)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// displayHost is the address to print for a listener: a wildcard address
// is shown as the loopback one, which a local browser can open.
func displayHost(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if ta.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(ta.Port))
	}
	return ta.String()
}

// run serves the node and its UI until ctx ends or one of them fails.
func (n *node) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// services are the parts that run until ctx ends; a new service adds
	// its Serve here.
	services := []func(context.Context) error{
		n.mesh.Serve,
		n.chat.Serve,
		n.files.Serve,
		n.music.Serve,
		func(ctx context.Context) error { return n.ui.Serve(ctx, n.ln) },
		n.plugins.Serve,
		n.calls.Serve,
		n.live.Serve,
	}
	var wg sync.WaitGroup
	errs := make([]error, len(services)+1)
	for i, serve := range services {
		wg.Go(func() { errs[i] = serve(ctx); cancel() })
	}
	wg.Wait()
	n.subsonic.Close()
	errs[len(services)] = n.db.Close()
	return errors.Join(errs...)
}

// Serve runs `catnest serve`.
func Serve(ctx context.Context, cfg ServeConfig, stdout io.Writer) error {
	log := newLogger(cfg.Verbose)
	n, err := newNode(cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "catnest node %s (%s)\nweb UI: %s\nAPI key: %s (for scripts; kept in %s)\nrendezvous: %s\n",
		n.mesh.ID(), n.mesh.Name(), n.url, n.apiKey, filepath.Join(cfg.Data, webui.APIKeyFile), cfg.SignalURL)
	for _, d := range cfg.Shares {
		fmt.Fprintf(stdout, "sharing: %s\n", d)
	}
	for _, d := range cfg.Music {
		fmt.Fprintf(stdout, "music: %s\n", d)
	}
	if user, _, _ := n.subsonic.Credentials(ctx); user != "" {
		// Apps take the server's address and add /rest/ themselves.
		fmt.Fprintf(stdout, "subsonic: server address %s (user %s)\n", strings.TrimSuffix(strings.Split(n.url, "?")[0], "/"), user)
	}
	return n.run(ctx)
}

// RunSignal runs `catnest signal`.
func RunSignal(ctx context.Context, cfg SignalConfig, stdout io.Writer) error {
	cfg.Server.Logger = newLogger(cfg.Verbose)
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return err
	}
	srv := signal.NewServer(cfg.Server)
	fmt.Fprintf(stdout, "catnest rendezvous on http://%s%s (key %q, discovery %v)\n",
		displayHost(ln.Addr()), cfg.Server.Path, cfg.Server.Key, cfg.Server.AllowDiscovery)
	if !cfg.TURN {
		if len(cfg.Server.TURN.URLs) > 0 {
			fmt.Fprintf(stdout, "TURN credentials for: %s\n", strings.Join(cfg.Server.TURN.URLs, " "))
		}
		return srv.Serve(ctx, ln)
	}
	// The relay and the rendezvous run together: either failing stops both.
	cfg.TURNRelay.Logger = cfg.Server.Logger
	relay, err := signal.NewTURNServer(cfg.TURNRelay)
	if err != nil {
		ln.Close()
		return err
	}
	pc, tln, err := signal.ListenTURN(cfg.Host, cfg.TURNPort)
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(stdout, "TURN relay on %s (UDP and TCP), public address %s; credentials for: %s\n",
		pc.LocalAddr(), cfg.TURNRelay.PublicIP, strings.Join(cfg.Server.TURN.URLs, " "))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var relayErr error
	wg.Go(func() { relayErr = relay.Serve(ctx, pc, tln); cancel() })
	err = srv.Serve(ctx, ln)
	cancel()
	wg.Wait()
	return errors.Join(err, relayErr)
}

// Demo runs `catnest demo`: a rendezvous and several nodes on loopback.
func Demo(ctx context.Context, cfg DemoConfig, stdout io.Writer) error {
	log := newLogger(cfg.Verbose)
	data := cfg.Data
	if data == "" {
		dir, err := os.MkdirTemp("", "catnest-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		data = dir
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	scfg := signal.DefaultServerConfig()
	scfg.Path = "/catnest"
	scfg.AllowDiscovery = true
	scfg.Logger = log.With("part", "rendezvous")
	srv := signal.NewServer(scfg)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := srv.Serve(ctx, ln); err != nil {
			log.Error("rendezvous", "err", err)
			cancel()
		}
	})
	signalURL := "http://" + ln.Addr().String() + "/catnest"

	host, portStr, err := net.SplitHostPort(cfg.HTTP)
	if err != nil {
		return fmt.Errorf("--http %q: %w", cfg.HTTP, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("--http %q: bad port", cfg.HTTP)
	}
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"}
	fmt.Fprintf(stdout, "catnest demo: %d nodes on loopback, rendezvous at %s\n", cfg.Nodes, signalURL)
	errc := make(chan error, cfg.Nodes)
	demoNames := make([]string, cfg.Nodes)
	ids := make([]mesh.ID, cfg.Nodes)
	for i := range cfg.Nodes {
		name := names[i%len(names)]
		if i >= len(names) {
			name += strconv.Itoa(i / len(names))
		}
		demoNames[i] = name
		// The keys first, so that each node can take the others' pushes.
		ident, err := mesh.LoadOrCreateIdentity(filepath.Join(data, name))
		if err != nil {
			return fmt.Errorf("demo node %s: %w", name, err)
		}
		ids[i] = ident.ID
	}
	var nodes []*node
	for i, name := range demoNames {
		addr := net.JoinHostPort(host, "0")
		if port != 0 {
			addr = net.JoinHostPort(host, strconv.Itoa(port+i))
		}
		if ctx.Err() != nil {
			break // stopped while starting: the deferred wg.Wait stops those started
		}
		// Each node shares sample files of its own, so that the Files
		// view has a gallery out of the box, and music of its own, so
		// that the Music view plays: a part of the library no other node
		// holds. writeDemoContent fills the folders once all run.
		shared, library := demoDirs(data, name)
		for _, d := range []string{shared, library} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("demo node %s: %w", name, err)
			}
		}
		n, err := newNode(ServeConfig{
			Data: filepath.Join(data, name), HTTP: addr, SignalURL: signalURL, SignalKey: scfg.Key,
			Name: name, LoopbackOnly: true, Shares: []string{shared}, Music: []string{library},
			AcceptPush: slices.Concat(ids[:i], ids[i+1:]),
		}, log.With("demo", name))
		if err != nil {
			return fmt.Errorf("demo node %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "  %-6s %s  web UI: %s\n", name, n.mesh.ID().Short(), n.url)
		nodes = append(nodes, n)
		wg.Go(func() {
			if err := n.run(ctx); err != nil {
				errc <- fmt.Errorf("demo node %s: %w", name, err)
				cancel()
			}
		})
	}
	if ctx.Err() != nil {
		return demoStopped(&wg, errc)
	}
	fmt.Fprintf(stdout, "Open a web UI above, or chat from a terminal: catnest chat --node %s --data %s lobby\nPress Ctrl-C to stop.\n",
		"http://"+displayHost(nodes[0].ln.Addr()), filepath.Join(data, names[0]))
	wg.Go(func() {
		if err := writeDemoContent(ctx, data, demoNames); err != nil && ctx.Err() == nil {
			log.Warn("demo content", "err", err)
		}
	})
	wg.Go(func() {
		if err := demoLobby(ctx, nodes); err != nil && ctx.Err() == nil {
			log.Warn("demo lobby", "err", err)
		}
	})
	wg.Go(func() {
		if err := demoPlugins(ctx, nodes); err != nil && ctx.Err() == nil {
			log.Warn("demo plugins", "err", err)
		}
	})
	if err := demoLive(ctx, nodes[0]); err != nil {
		log.Warn("demo live room", "err", err)
	}
	<-ctx.Done()
	return demoStopped(&wg, errc)
}

// demoStopped waits for the demo's parts to stop, once its ctx ended, and
// returns the errors its nodes reported.
func demoStopped(wg *sync.WaitGroup, errc chan error) error {
	wg.Wait()
	close(errc)
	var all []error
	for err := range errc {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// demoLobby has the first node create a "lobby" channel, the others join
// it, and a few messages start its history.
func demoLobby(ctx context.Context, nodes []*node) error {
	owner := nodes[0]
	ch, err := owner.chat.CreateChannel(ctx, "lobby", false)
	if err != nil {
		return err
	}
	for _, n := range nodes[1:] {
		// The channel is joinable once the owner's record reaches n.
		for {
			err := n.chat.Join(ctx, ch.ID)
			if err == nil {
				break
			}
			if !errors.Is(err, chatlog.ErrUnknownChannel) {
				return err
			}
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	lines := []string{
		"Welcome to catnest! This lobby lives on every node that joined it.",
		"Messages are signed by their author and synced between nodes, even when the author is offline.",
		"Try retracting one of your messages, or marking one to keep it forever.",
		"Open another node's web UI and watch messages arrive live.",
	}
	for i, text := range lines {
		n := nodes[i%len(nodes)]
		if _, err := n.chat.Post(ctx, ch.ID, text); err != nil {
			return err
		}
	}
	return nil
}
