package signal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"
)

// TURN: a rendezvous can hand its registered clients short-lived
// credentials for TURN servers that share a secret with it, in the scheme
// coturn calls use-auth-secret (the TURN REST API draft): the username is
// the expiry as Unix seconds and an id ("1700000000:ID"), the password
// base64(HMAC-SHA1(secret, username)). Any TURN server that knows the
// secret checks them without asking the rendezvous: the embedded
// TURNServer below, or a coturn with static-auth-secret.

// TURNConfig says which TURN servers a Server hands credentials for. It is
// off while Secret or URLs is empty.
type TURNConfig struct {
	// URLs are the ICE server URLs handed out, e.g.
	// "turn:203.0.113.5:3478?transport=udp"; stun: URLs are handed out too.
	URLs []string
	// Secret is the secret shared with the TURN servers (coturn's
	// static-auth-secret).
	Secret string
	// TTL is how long credentials are valid; default DefaultTURNTTL.
	TTL time.Duration
}

// DefaultTURNTTL is how long TURN credentials are valid by default.
const DefaultTURNTTL = time.Hour

func (c TURNConfig) enabled() bool { return c.Secret != "" && len(c.URLs) > 0 }

// ICEServer is one STUN or TURN server as WebRTC's RTCIceServer has it.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// TURNCredentials is the answer of GET {path}{key}/turn: the ICE servers
// with their credentials, and when the credentials expire.
type TURNCredentials struct {
	ICEServers []ICEServer `json:"iceServers"`
	Expires    time.Time   `json:"expires"`
	// TTL is the credentials' lifetime in seconds, as the TURN REST API
	// draft has it, for clients whose clock differs from the server's.
	TTL int64 `json:"ttl"`
}

// turnCredentials makes credentials for id valid for cfg.TTL from now.
func turnCredentials(cfg TURNConfig, id string, now time.Time) (TURNCredentials, error) {
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = DefaultTURNTTL
	}
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(cfg.Secret, id, ttl)
	if err != nil {
		return TURNCredentials{}, fmt.Errorf("signal: TURN credentials: %w", err)
	}
	var stun, turns []string
	for _, u := range cfg.URLs {
		if len(u) > 4 && u[:4] == "stun" {
			stun = append(stun, u)
		} else {
			turns = append(turns, u)
		}
	}
	var out TURNCredentials
	if len(stun) > 0 {
		out.ICEServers = append(out.ICEServers, ICEServer{URLs: stun})
	}
	if len(turns) > 0 {
		out.ICEServers = append(out.ICEServers, ICEServer{URLs: turns, Username: user, Credential: pass})
	}
	out.Expires = now.Add(ttl).UTC().Truncate(time.Second)
	out.TTL = int64(ttl / time.Second)
	return out, nil
}

// registeredWith reports whether id is registered with token.
func (s *Server) registeredWith(id, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[id]
	return c != nil && token != "" && c.token == token
}

// TURNServerConfig configures the embedded TURN relay.
type TURNServerConfig struct {
	// PublicIP is the address clients reach the relay at, announced in
	// its relayed addresses. Required.
	PublicIP netip.Addr
	// RelayHost is where relayed sockets are bound; default all
	// interfaces ("0.0.0.0", or "::" for an IPv6 PublicIP).
	RelayHost string
	// Secret is the shared secret of the credentials (see TURNConfig).
	Secret string
	// Realm is the TURN realm; default "catnest".
	Realm string
	// AllowPrivate lets the relay send to loopback, private, link-local
	// and shared (CGNAT) addresses other than its own. Off, the relay
	// cannot be used to reach into the network it runs in.
	AllowPrivate bool
	// Logger receives the relay's logs; nil discards them.
	Logger *slog.Logger
}

// TURNServer is an embedded TURN relay (pion/turn) that takes the
// credentials a Server hands out. Create it with NewTURNServer, run Serve.
type TURNServer struct {
	cfg TURNServerConfig
	log *slog.Logger

	mu     sync.Mutex
	denied int
	ports  map[int]int // the relay's live allocation ports, counted

	own atomic.Pointer[ownAddrs] // the host's addresses, read again after ownAddrsTTL
}

// ownAddrs is the host's interface addresses as read at a time.
type ownAddrs struct {
	addrs []netip.Addr
	at    time.Time
}

// ownAddrsTTL is how long the host's addresses are taken as read: they are
// checked for every datagram to the relay's own address.
const ownAddrsTTL = 10 * time.Second

// errNoTCPRelay answers TCP allocations (RFC 6062): ICE never asks for
// them, and CONNECT would make the relay a TCP proxy to any address.
var errNoTCPRelay = errors.New("signal: TURN relay: TCP allocations are off")

// errRelayToHost refuses a datagram to the relay's own host other than to
// one of its allocations.
var errRelayToHost = errors.New("signal: TURN relay: no relaying to the relay's host other than to its allocations")

// NewTURNServer checks cfg and returns a relay for it.
func NewTURNServer(cfg TURNServerConfig) (*TURNServer, error) {
	if !cfg.PublicIP.IsValid() || cfg.PublicIP.IsUnspecified() {
		return nil, errors.New("signal: TURN relay: a public IP is required")
	}
	cfg.PublicIP = cfg.PublicIP.Unmap()
	if cfg.Secret == "" {
		return nil, errors.New("signal: TURN relay: a secret is required")
	}
	if cfg.Realm == "" {
		cfg.Realm = "catnest"
	}
	if cfg.RelayHost == "" {
		cfg.RelayHost = "0.0.0.0"
		if cfg.PublicIP.Is6() {
			cfg.RelayHost = "::"
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TURNServer{cfg: cfg, log: log, ports: map[int]int{}}, nil
}

// ListenTURN opens the UDP and TCP listeners of a relay on host:port. With
// port 0 it picks a port free for both.
func ListenTURN(host string, port int) (net.PacketConn, net.Listener, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, nil, fmt.Errorf("signal: TURN relay: %w", err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != 0 {
			return nil, nil, fmt.Errorf("signal: TURN relay: %w", err)
		}
	}
	return nil, nil, errors.New("signal: TURN relay: found no port free for both UDP and TCP")
}

// Serve relays on pc (UDP) and ln (TCP; may be nil) until ctx ends, then
// closes them and every allocation and returns nil.
func (t *TURNServer) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	lf := slogPion{log: t.log.With("part", "turn")}
	gen := func() turn.RelayAddressGenerator {
		return &relayGen{
			RelayAddressGeneratorStatic: turn.RelayAddressGeneratorStatic{RelayAddress: net.IP(t.cfg.PublicIP.AsSlice()), Address: t.cfg.RelayHost},
			t:                           t,
		}
	}
	scfg := turn.ServerConfig{
		Realm:         t.cfg.Realm,
		AuthHandler:   turn.LongTermTURNRESTAuthHandler(t.cfg.Secret, lf.NewLogger("auth")),
		LoggerFactory: lf,
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc, RelayAddressGenerator: gen(), PermissionHandler: t.permit,
		}},
	}
	if ln != nil {
		scfg.ListenerConfigs = []turn.ListenerConfig{{
			Listener: ln, RelayAddressGenerator: gen(), PermissionHandler: t.permit,
		}}
	}
	srv, err := turn.NewServer(scfg)
	if err != nil {
		pc.Close()
		if ln != nil {
			ln.Close()
		}
		return fmt.Errorf("signal: TURN relay: %w", err)
	}
	<-ctx.Done()
	return srv.Close()
}

// Denied is how many permissions and datagrams the relay refused (see
// AllowPrivate).
func (t *TURNServer) Denied() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.denied
}

// permit says whether a client may send to peer through the relay: not to
// the host's own network, other than the relay's public address.
func (t *TURNServer) permit(client net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	if t.cfg.AllowPrivate || ip == t.cfg.PublicIP || (!internalAddr(ip) && !t.hostAddr(ip)) {
		return true
	}
	t.deny()
	t.log.Debug("signal: TURN relay refused a private peer", "client", client, "peer", ip)
	return false
}

func (t *TURNServer) deny() {
	t.mu.Lock()
	t.denied++
	t.mu.Unlock()
}

// hostAddr reports whether ip is one of the host's own addresses: the
// public one, or any interface's. Relayed datagrams to them would reach
// the host's own services (from the host itself, past its firewall).
func (t *TURNServer) hostAddr(ip netip.Addr) bool {
	if ip == t.cfg.PublicIP {
		return true
	}
	o := t.own.Load()
	if o == nil || time.Since(o.at) > ownAddrsTTL {
		o = &ownAddrs{at: time.Now()}
		if as, err := net.InterfaceAddrs(); err == nil {
			for _, a := range as {
				if p, err := netip.ParsePrefix(a.String()); err == nil {
					o.addrs = append(o.addrs, p.Addr().Unmap())
				}
			}
		}
		t.own.Store(o)
	}
	for _, a := range o.addrs {
		if a == ip {
			return true
		}
	}
	return false
}

// relayPort reports whether port is one of the relay's live allocations.
func (t *TURNServer) relayPort(port int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ports[port] > 0
}

func (t *TURNServer) addPort(port, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ports[port] += n
	if t.ports[port] <= 0 {
		delete(t.ports, port)
	}
}

// relayGen allocates the relay's UDP sockets, each guarded so that it
// sends to the relay's own host only at another allocation (two relayed
// peers talk through the relay's address), and refuses TCP allocations.
type relayGen struct {
	turn.RelayAddressGeneratorStatic
	t *TURNServer
}

func (g *relayGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.RelayAddressGeneratorStatic.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	ua, ok := pc.LocalAddr().(*net.UDPAddr)
	if !ok {
		pc.Close()
		return nil, nil, fmt.Errorf("signal: TURN relay: socket address %v", pc.LocalAddr())
	}
	g.t.addPort(ua.Port, 1)
	return &guardConn{PacketConn: pc, t: g.t, port: ua.Port}, addr, nil
}

func (g *relayGen) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errNoTCPRelay
}

func (g *relayGen) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errNoTCPRelay
}

// guardConn is a relay socket that refuses datagrams to its host's
// addresses other than at the relay's allocations.
type guardConn struct {
	net.PacketConn
	t     *TURNServer
	port  int
	close sync.Once
}

func (c *guardConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok && !c.t.cfg.AllowPrivate {
		ip, _ := netip.AddrFromSlice(ua.IP)
		if c.t.hostAddr(ip.Unmap()) && !c.t.relayPort(ua.Port) {
			c.t.deny()
			return 0, fmt.Errorf("%w: %v", errRelayToHost, addr)
		}
	}
	return c.PacketConn.WriteTo(p, addr)
}

func (c *guardConn) Close() error {
	c.close.Do(func() { c.t.addPort(c.port, -1) })
	return c.PacketConn.Close()
}

// notPublic are address blocks that are not public unicast beyond what
// netip's predicates cover: carriers' shared space (RFC 6598), IETF
// protocol assignments, benchmarking, reserved and broadcast; IPv6
// site-local (deprecated, still routed by some) and the NAT64 local-use
// prefix (RFC 8215), which a NAT64 in the host's network maps to any IPv4.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
}

// embeds4 are IPv6 prefixes whose addresses carry an IPv4 address that a
// translator or tunnel (NAT64, 6to4) may send to: the IPv4 one is checked.
var embeds4 = []struct {
	p   netip.Prefix
	off int
}{
	{netip.MustParsePrefix("64:ff9b::/96"), 12},
	{netip.MustParsePrefix("2002::/16"), 2},
	{netip.MustParsePrefix("::/96"), 12}, // IPv4-compatible (deprecated)
}

// internalAddr reports whether ip is not a public unicast address: a relay
// must not be a way into its own network.
func internalAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() ||
		(ip.Is4() && ip.As4()[0] == 0) {
		return true
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return true
		}
	}
	for _, e := range embeds4 {
		if e.p.Contains(ip) {
			b := ip.As16()
			return internalAddr(netip.AddrFrom4([4]byte(b[e.off : e.off+4])))
		}
	}
	return false
}

// slogPion routes pion's logs to slog; pion's errors about refused
// credentials are routine for a public relay, so everything is Debug.
type slogPion struct{ log *slog.Logger }

func (f slogPion) NewLogger(scope string) logging.LeveledLogger {
	return slogPionLevel{log: f.log.With("pion", scope)}
}

type slogPionLevel struct{ log *slog.Logger }

func (l slogPionLevel) f(format string, a ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, a...))
	}
}
func (l slogPionLevel) Trace(string)              {}
func (l slogPionLevel) Tracef(string, ...any)     {}
func (l slogPionLevel) Debug(m string)            { l.f("%s", m) }
func (l slogPionLevel) Debugf(f string, a ...any) { l.f(f, a...) }
func (l slogPionLevel) Info(m string)             { l.f("%s", m) }
func (l slogPionLevel) Infof(f string, a ...any)  { l.f(f, a...) }
func (l slogPionLevel) Warn(m string)             { l.f("%s", m) }
func (l slogPionLevel) Warnf(f string, a ...any)  { l.f(f, a...) }
func (l slogPionLevel) Error(m string)            { l.f("%s", m) }
func (l slogPionLevel) Errorf(f string, a ...any) { l.f(f, a...) }

// serveTURN answers GET {path}{key}/turn?id=&token=: credentials for the
// client registered as id with token, else 401. Only registered clients
// get them, so that the relay serves the rendezvous's users, not anyone
// who finds it; each client gets its own, named after its id.
func (s *Server) serveTURN(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	id, token := q.Get("id"), q.Get("token")
	if key != s.cfg.Key || !ValidID(id) || len(token) > maxTokenLength || !s.registeredWith(id, token) {
		http.Error(w, "TURN credentials are for clients registered with this server", http.StatusUnauthorized)
		return
	}
	creds, err := turnCredentials(s.cfg.TURN, id, time.Now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, creds)
}
