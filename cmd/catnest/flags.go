package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/pion/webrtc/v4"

	"github.com/catnest/catnest/live"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/signal"
	"github.com/catnest/catnest/music"
	"github.com/catnest/catnest/webui"
)

// ServeConfig is what `catnest serve` runs.
type ServeConfig struct {
	// Data is the node's data dir: its key, and later its database.
	Data string
	// HTTP is the web UI's listen address.
	HTTP string
	// Token guards the web UI; required (and made up if empty) when HTTP
	// is not a loopback address.
	Token string
	// SignalURL is the rendezvous server's base URL including its path.
	SignalURL string
	// SignalKey is the rendezvous API key.
	SignalKey string
	// Name is the node's human name.
	Name string
	// Bootstrap lists nodes to link to when the rendezvous hides its peers.
	Bootstrap []mesh.ID
	// ICEServers are STUN and TURN servers.
	ICEServers []webrtc.ICEServer
	// Verbose turns on debug logs.
	Verbose bool
	// LoopbackOnly keeps WebRTC on loopback (demo, tests).
	LoopbackOnly bool
	// Shares are folders whose files the node shares in place, absolute
	// and checked to be readable directories (shards.Config.Folders).
	Shares []string
	// Music are the music folders (serve --music), absolute and checked
	// like Shares: shards shares them too (it hashes each file once) and
	// the music service makes its library of their audio files.
	Music []string
	// UploadRate caps the bytes per second the node sends to peers for
	// the files it shares and relays; 0 is no cap.
	UploadRate int64
	// AcceptPush lists the nodes whose pushes this node takes: a push
	// writes a file into the data dir unasked, so by default nobody's is.
	AcceptPush []mesh.ID
	// SubsonicUser and SubsonicPassword, when set, are the login of
	// Subsonic apps at /rest (kept in the database; the web UI's Settings
	// can set them too). Empty leaves what was kept.
	SubsonicUser, SubsonicPassword string
	// LiveFanout is the most children the node forwards a live room to.
	LiveFanout int
	// LiveMaxViewers is the most WHEP viewers the node serves at once,
	// over all rooms; more are refused (503, Retry-After).
	LiveMaxViewers int
	// Guests lets PeerJS pages post to public channels as guests of this
	// node; without it they may only read (see package guest).
	Guests bool
	// MaxGuests bounds PeerJS page connections at once; 0 serves none.
	MaxGuests int
	// MusicCache bounds the bytes of the tracks fetched from peers to
	// play them (music.Config.CacheLimit): 0 is music's default, negative
	// keeps only those playing.
	MusicCache int64
}

// defaultDataDir is catnest under the XDG data home.
func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "catnest")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "catnest")
	}
	return "catnest-data"
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// byteRate reads a number of bytes per second: plain bytes ("500000") or
// with a unit ("2MiB", "1.5 MB"; binary and decimal units as go-humanize
// reads them).
type byteRate struct{ n *int64 }

func (b byteRate) String() string {
	if b.n == nil || *b.n == 0 {
		return "0"
	}
	return strconv.FormatInt(*b.n, 10)
}

func (b byteRate) Set(s string) error {
	v := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return fmt.Errorf("want bytes per second, such as 2MiB or 500000")
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("%s is too large", s)
	}
	// A cap under one byte a second (0.5) would round to 0, which is no
	// cap at all: the opposite of what was asked.
	if n == 0 && strings.ContainsAny(v, "123456789") {
		return fmt.Errorf("%s is under one byte per second (0 is no cap)", s)
	}
	*b.n = int64(n)
	return nil
}

// byteSize reads a number of bytes: plain ("500000") or with a unit
// ("2GiB", "1.5 GB"), as go-humanize reads them.
type byteSize struct{ n *int64 }

func (b byteSize) String() string {
	if b.n == nil {
		return "0"
	}
	return humanize.IBytes(uint64(max(*b.n, 0)))
}

func (b byteSize) Set(s string) error {
	n, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want a size, such as 2GiB or 500000")
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("%s is too large", s)
	}
	*b.n = int64(n)
	return nil
}

// msDuration reads "5000" as milliseconds, like PeerServer's CLI, and
// also Go durations such as "5s".
type msDuration struct{ d *time.Duration }

func (m msDuration) String() string {
	if m.d == nil {
		return ""
	}
	return strconv.FormatInt(m.d.Milliseconds(), 10)
}

func (m msDuration) Set(s string) error {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms <= 0 {
			return fmt.Errorf("must be positive")
		}
		*m.d = time.Duration(ms) * time.Millisecond
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("want milliseconds or a duration such as 5s")
	}
	*m.d = d
	return nil
}

func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: catnest %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

func parseServe(args []string, stderr io.Writer) (ServeConfig, error) {
	cfg := ServeConfig{}
	musicCache := music.DefaultConfig().CacheLimit
	fs := newFlagSet("serve", "Run a personal node: it joins the mesh through a rendezvous server,\nkeeps about four links, and serves a web UI. It shares the files under each\n--share folder (and those added with catnest share), downloads what catnest get\nor the web UI asks for into <data>/downloads, and takes pushed files only from\nthe nodes named with --accept-push. The audio files (MP3, FLAC, WAV) under each\n--music folder join the mesh-wide library of the web UI's Music view.", stderr)
	fs.StringVar(&cfg.Data, "data", defaultDataDir(), "data `dir` (the node key lives here)")
	fs.StringVar(&cfg.HTTP, "http", webui.DefaultAddr, "web UI listen `address`")
	fs.StringVar(&cfg.Token, "token", os.Getenv("CATNEST_TOKEN"), "web UI access `token`, required off loopback (default $CATNEST_TOKEN, or made up)")
	fs.StringVar(&cfg.SignalURL, "signal", "", "rendezvous base `URL` including its path, e.g. http://127.0.0.1:9000/myapp (required)")
	fs.StringVar(&cfg.SignalKey, "signal-key", "peerjs", "rendezvous API `key`")
	fs.StringVar(&cfg.Name, "name", "", "node `name` shown to others (default: the start of the node ID)")
	var boot, stun, turn, share, musicDirs, acceptPush listFlag
	fs.Var(&share, "share", "share every file under `DIR`, in place, following changes (repeatable)")
	fs.Var(&musicDirs, "music", "share the music under `DIR` (MP3, FLAC, WAV, with .lrc lyrics and cover images beside them) in the mesh-wide library, following changes (repeatable)")
	fs.Var(byteRate{&cfg.UploadRate}, "upload-rate", "cap the file pieces this node serves and pushes to peers at `BYTES` per second, e.g. 2MiB or 500000 (0: no cap)")
	fs.Var(byteSize{&musicCache}, "music-cache", "keep at most `BYTES` of the tracks fetched from peers to play them, e.g. 2GiB; the least recently played go first (0: only those playing)")
	fs.Var(&acceptPush, "accept-push", "take files pushed by node `ID` (repeatable); pushes from other nodes are refused")
	fs.Var(&boot, "bootstrap", "node `ID` to link to, for a rendezvous without discovery (repeatable)")
	fs.Var(&stun, "stun", "STUN server `URL`, e.g. stun:stun.example.org:3478 (repeatable)")
	fs.Var(&turn, "turn", "TURN server `URL`, e.g. turn:user:pass@turn.example.org:3478 (repeatable)")
	fs.StringVar(&cfg.SubsonicUser, "subsonic-user", "", "let Subsonic music apps log in at http://HOST:PORT/rest as `NAME` (with --subsonic-password; kept, and changeable in the web UI's Settings)")
	fs.BoolVar(&cfg.Guests, "guests", false, "let web pages that connect with PeerJS post to this node's public channels, marked as guests of this node (they may always read them)")
	fs.IntVar(&cfg.MaxGuests, "max-guests", mesh.DefaultMaxGuests, "serve at most `N` PeerJS page connections at once (0: none)")
	fs.StringVar(&cfg.SubsonicPassword, "subsonic-password", os.Getenv("CATNEST_SUBSONIC_PASSWORD"), "the Subsonic apps' `password` (default $CATNEST_SUBSONIC_PASSWORD)")
	fs.BoolVar(&cfg.LoopbackOnly, "loopback", false, "link over loopback addresses only (every node on this machine)")
	fs.IntVar(&cfg.LiveFanout, "live-fanout", live.DefaultConfig().Fanout, "forward a live room to at most `N` child nodes (this node's own viewers come on top)")
	fs.IntVar(&cfg.LiveMaxViewers, "live-max-viewers", live.DefaultConfig().MaxViewers, "serve at most `N` live viewers (WHEP) at once over all rooms; more get 503 with Retry-After and can watch from another node")
	fs.BoolVar(&cfg.Verbose, "v", false, "debug logs")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	// 0 asks for a cache of nothing; the Config's 0 is the default.
	cfg.MusicCache = musicCache
	if musicCache == 0 {
		cfg.MusicCache = -1
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if cfg.LiveFanout < 1 || cfg.LiveFanout > 64 {
		return cfg, fmt.Errorf("serve: --live-fanout %d: want 1 to 64", cfg.LiveFanout)
	}
	if cfg.LiveMaxViewers < 1 || cfg.LiveMaxViewers > 4096 {
		return cfg, fmt.Errorf("serve: --live-max-viewers %d: want 1 to 4096", cfg.LiveMaxViewers)
	}
	if cfg.SignalURL == "" {
		return cfg, fmt.Errorf("serve: --signal is required (the rendezvous URL, e.g. http://127.0.0.1:9000/myapp)")
	}
	if err := checkSignalURL(cfg.SignalURL); err != nil {
		return cfg, fmt.Errorf("serve: --signal: %w", err)
	}
	for _, s := range boot {
		id, err := mesh.ParseID(s)
		if err != nil {
			return cfg, fmt.Errorf("serve: --bootstrap: %w", err)
		}
		cfg.Bootstrap = append(cfg.Bootstrap, id)
	}
	for _, s := range acceptPush {
		id, err := mesh.ParseID(s)
		if err != nil {
			return cfg, fmt.Errorf("serve: --accept-push: %w", err)
		}
		cfg.AcceptPush = append(cfg.AcceptPush, id)
	}
	for _, d := range share {
		dir, err := checkShareDir(d)
		if err != nil {
			return cfg, fmt.Errorf("serve: --share: %w", err)
		}
		cfg.Shares = append(cfg.Shares, dir)
	}
	if err := checkShareOverlap(cfg.Shares, cfg.Data); err != nil {
		return cfg, fmt.Errorf("serve: --share: %w", err)
	}
	for _, d := range musicDirs {
		dir, err := checkShareDir(d)
		if err != nil {
			return cfg, fmt.Errorf("serve: --music: %w", err)
		}
		cfg.Music = append(cfg.Music, dir)
	}
	// A music folder may lie in a shared one, or hold one (sharedFolders
	// shares each file once), but must not hold the data dir nor be
	// given twice.
	if err := checkShareOverlap(cfg.Music, cfg.Data); err != nil {
		return cfg, fmt.Errorf("serve: --music: %w", err)
	}
	ice, err := parseICE(stun, turn)
	if err != nil {
		return cfg, fmt.Errorf("serve: %w", err)
	}
	cfg.ICEServers = ice
	if (cfg.SubsonicUser == "") != (cfg.SubsonicPassword == "") {
		return cfg, fmt.Errorf("serve: --subsonic-user and --subsonic-password go together")
	}
	return cfg, nil
}

// checkShareDir returns the absolute form of a folder to share, or why it
// cannot be shared: it must be a directory this process can list.
func checkShareDir(d string) (string, error) {
	if d == "" {
		return "", fmt.Errorf("empty folder name")
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory (to share one file, use catnest share)", abs)
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && err != io.EOF {
		return "", fmt.Errorf("%s cannot be read: %w", abs, err)
	}
	return abs, nil
}

// checkShareOverlap refuses shared folders that hold the node's data dir
// (its private key, API key and database, and the partial downloads that
// would be shared back while they arrive) and folders given twice or one
// inside another (their files would be hashed and watched twice).
func checkShareOverlap(shares []string, data string) error {
	real := make([]string, len(shares))
	for i, d := range shares {
		real[i] = realPath(d)
	}
	dataReal := realPath(data)
	for i, d := range real {
		if within(dataReal, d) {
			return fmt.Errorf("%s holds the node's data dir %s (its keys and database): share a folder that does not", shares[i], data)
		}
		for j, e := range real[:i] {
			if within(d, e) || within(e, d) {
				return fmt.Errorf("%s and %s overlap: give each folder once", shares[j], shares[i])
			}
		}
	}
	return nil
}

// sharedFolders are the folders shards shares for the --share and
// --music folders, each file once: a folder inside another is left to
// the outer one. music are the music folders as the music service must
// name them: within the shared folder holding them, under that folder's
// name (shards names files by the folder it was given, and a music folder
// may be reached through a symlink).
func sharedFolders(shares, musicDirs []string) (folders, music []string) {
	all := slices.Concat(shares, musicDirs)
	real := make([]string, len(all))
	for i, d := range all {
		real[i] = realPath(d)
	}
	// outer is the folder that holds all[i]: the first of the outermost
	// folders it lies within.
	outer := func(i int) int {
		for j := range all {
			if j != i && within(real[i], real[j]) && (real[i] != real[j] || j < i) {
				return j
			}
		}
		return i
	}
	for i, d := range all {
		if outer(i) == i {
			folders = append(folders, d)
		}
	}
	for i, d := range musicDirs {
		k := len(shares) + i
		j := k
		for o := outer(j); o != j; o = outer(j) {
			j = o
		}
		if j == k {
			music = append(music, d)
			continue
		}
		rel, err := filepath.Rel(real[j], real[k])
		if err != nil {
			music = append(music, d)
			continue
		}
		music = append(music, filepath.Join(all[j], rel))
	}
	return folders, music
}

// realPath is p absolute with its symlinks resolved, as far as it exists
// (a data dir may not exist before the first run).
func realPath(p string) string {
	p, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// within reports whether path p is dir or inside it (both clean and
// absolute).
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func checkSignalURL(s string) error {
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return fmt.Errorf("%q: want an http or https URL", s)
	}
	return nil
}

// parseICE turns --stun and --turn values into ICE servers. A TURN URL
// may carry its credentials as turn:user:pass@host:port.
func parseICE(stun, turn []string) ([]webrtc.ICEServer, error) {
	var out []webrtc.ICEServer
	for _, s := range stun {
		if !strings.HasPrefix(s, "stun:") && !strings.HasPrefix(s, "stuns:") {
			return nil, fmt.Errorf("--stun %q: want stun:host:port", s)
		}
		out = append(out, webrtc.ICEServer{URLs: []string{s}})
	}
	for _, s := range turn {
		scheme, rest, ok := strings.Cut(s, ":")
		if !ok || (scheme != "turn" && scheme != "turns") {
			return nil, fmt.Errorf("--turn %q: want turn:[user:pass@]host:port", s)
		}
		srv := webrtc.ICEServer{}
		if cred, hostport, ok := strings.Cut(rest, "@"); ok {
			user, pass, ok := strings.Cut(cred, ":")
			if !ok {
				return nil, fmt.Errorf("--turn %q: credentials must be user:pass", s)
			}
			srv.Username, srv.Credential = user, pass
			rest = hostport
		}
		srv.URLs = []string{scheme + ":" + rest}
		out = append(out, srv)
	}
	return out, nil
}

// SignalConfig is what `catnest signal` runs.
type SignalConfig struct {
	Host    string
	Port    int
	Server  signal.ServerConfig
	Verbose bool
	// TURN runs the embedded TURN relay (with TURNRelay's settings) on
	// TURNPort, UDP and TCP; its URLs join Server.TURN.URLs.
	TURN      bool
	TURNPort  int
	TURNRelay signal.TURNServerConfig
}

func parseSignal(args []string, stderr io.Writer) (SignalConfig, error) {
	cfg := SignalConfig{Server: signal.DefaultServerConfig()}
	fs := newFlagSet("signal", "Run a rendezvous server that speaks the PeerJS PeerServer protocol, so that\ncatnest nodes (and PeerJS pages) can find each other.", stderr)
	fs.StringVar(&cfg.Host, "host", "", "listen `address` (default: all interfaces)")
	fs.IntVar(&cfg.Port, "port", 9000, "listen `port`")
	fs.StringVar(&cfg.Server.Key, "key", cfg.Server.Key, "API `key` clients must present")
	fs.StringVar(&cfg.Server.Path, "path", cfg.Server.Path, "URL `path` the server is mounted at")
	fs.BoolVar(&cfg.Server.AllowDiscovery, "allow-discovery", false, "let clients list the connected ids (GET {path}{key}/peers)")
	fs.Var(msDuration{&cfg.Server.ExpireTimeout}, "expire-timeout", "`ms` (or duration) to hold messages for an offline peer before answering EXPIRE")
	fs.Var(msDuration{&cfg.Server.AliveTimeout}, "alive-timeout", "`ms` (or duration) without a heartbeat before a client is dropped")
	fs.IntVar(&cfg.Server.ConcurrentLimit, "concurrent-limit", cfg.Server.ConcurrentLimit, "most clients connected at `once`")
	fs.IntVar(&cfg.Server.PerAddressLimit, "per-address-limit", cfg.Server.PerAddressLimit, "most WebSockets open from one IP address (IPv6: one /64) at `once`; behind a reverse proxy, set it to --concurrent-limit")
	fs.BoolVar(&cfg.Verbose, "v", false, "debug logs")
	var turnIP string
	var turnURLs listFlag
	fs.BoolVar(&cfg.TURN, "turn", false, "also run a TURN relay for nodes behind NATs that block direct links; registered clients get credentials for it at GET {path}{key}/turn")
	fs.IntVar(&cfg.TURNPort, "turn-port", 3478, "TURN relay `port` (UDP and TCP)")
	fs.StringVar(&turnIP, "turn-public-ip", "", "the relay's public `IP`, which clients reach it at (required with --turn)")
	fs.StringVar(&cfg.Server.TURN.Secret, "turn-secret", os.Getenv("CATNEST_TURN_SECRET"), "`secret` shared with the TURN servers, as coturn's static-auth-secret (default $CATNEST_TURN_SECRET; with --turn alone, made up)")
	fs.StringVar(&cfg.TURNRelay.Realm, "turn-realm", "catnest", "TURN `realm`")
	fs.BoolVar(&cfg.TURNRelay.AllowPrivate, "turn-allow-private", false, "let the relay send to loopback and private addresses other than its own (tests, LANs)")
	fs.Var(&turnURLs, "turn-url", "hand out credentials for the TURN or STUN server at `URL` too, e.g. turn:turn.example.org:3478 for a coturn with use-auth-secret and the same --turn-secret (repeatable)")
	fs.DurationVar(&cfg.Server.TURN.TTL, "turn-ttl", signal.DefaultTURNTTL, "how long the TURN credentials handed out are valid")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("signal: unexpected argument %q", fs.Arg(0))
	}
	if err := cfg.checkTURN(turnIP, turnURLs); err != nil {
		return cfg, fmt.Errorf("signal: %w", err)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return cfg, fmt.Errorf("signal: --port %d out of range", cfg.Port)
	}
	if cfg.Server.ConcurrentLimit <= 0 {
		return cfg, fmt.Errorf("signal: --concurrent-limit must be positive")
	}
	if cfg.Server.PerAddressLimit <= 0 {
		return cfg, fmt.Errorf("signal: --per-address-limit must be positive")
	}
	return cfg, nil
}

// checkTURN checks the TURN flags and fills in the relay's settings and
// the URLs handed out.
func (cfg *SignalConfig) checkTURN(publicIP string, urls []string) error {
	for _, u := range urls {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
			return fmt.Errorf("--turn-url %q: want turn:host:port, turns:host:port or stun:host:port", u)
		}
	}
	if cfg.Server.TURN.TTL < time.Minute {
		return fmt.Errorf("--turn-ttl %v: at least a minute, so that nodes can use them", cfg.Server.TURN.TTL)
	}
	if !cfg.TURN {
		if len(urls) > 0 && cfg.Server.TURN.Secret == "" {
			return fmt.Errorf("--turn-url needs --turn-secret, the secret the TURN server shares")
		}
		cfg.Server.TURN.URLs = urls
		return nil
	}
	if cfg.TURNPort <= 0 || cfg.TURNPort > 65535 {
		return fmt.Errorf("--turn-port %d out of range", cfg.TURNPort)
	}
	ip, err := netip.ParseAddr(publicIP)
	if err != nil || ip.IsUnspecified() {
		return fmt.Errorf("--turn needs --turn-public-ip, the address clients reach the relay at")
	}
	if cfg.Server.TURN.Secret == "" {
		cfg.Server.TURN.Secret = rand.Text() // both ends are this process
	}
	cfg.TURNRelay.PublicIP = ip.Unmap()
	cfg.TURNRelay.Secret = cfg.Server.TURN.Secret
	hp := net.JoinHostPort(cfg.TURNRelay.PublicIP.String(), strconv.Itoa(cfg.TURNPort))
	cfg.Server.TURN.URLs = append([]string{"stun:" + hp, "turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}, urls...)
	return nil
}

// DemoConfig is what `catnest demo` runs.
type DemoConfig struct {
	// HTTP is the first node's web UI address; the others take the next ports.
	HTTP string
	// Nodes is how many nodes to run.
	Nodes int
	// Data is where the nodes keep their data; empty means a temp dir
	// removed at exit.
	Data    string
	Verbose bool
}

func parseDemo(args []string, stderr io.Writer) (DemoConfig, error) {
	cfg := DemoConfig{}
	fs := newFlagSet("demo", "Run a small mesh in one process on loopback: an embedded rendezvous server and\nseveral nodes, each with its own web UI.", stderr)
	fs.StringVar(&cfg.HTTP, "http", webui.DefaultAddr, "first node's web UI `address`; the others use the following ports")
	fs.IntVar(&cfg.Nodes, "nodes", 4, "`number` of nodes")
	fs.StringVar(&cfg.Data, "data", "", "data `dir` for the nodes (default: a temp dir removed at exit)")
	fs.BoolVar(&cfg.Verbose, "v", false, "debug logs")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))
	}
	if cfg.Nodes < 2 || cfg.Nodes > 32 {
		return cfg, fmt.Errorf("demo: --nodes must be 2..32")
	}
	return cfg, nil
}
