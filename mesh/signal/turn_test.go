package signal

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"

	"github.com/catnest/catnest/internal/testutil"
)

const testTURNSecret = "s3cret-for-tests"

func turnServerConfig(urls ...string) ServerConfig {
	cfg := testConfig()
	cfg.TURN = TURNConfig{URLs: urls, Secret: testTURNSecret, TTL: 10 * time.Minute}
	return cfg
}

// TestTURNCredentialsOnlyForRegistered: GET /turn answers a registered
// client (with its own token) with credentials a coturn with the same
// secret takes, and refuses everyone else.
func TestTURNCredentialsOnlyForRegistered(t *testing.T) {
	checkGoroutines(t)
	srv := startServer(t, turnServerConfig("stun:127.0.0.1:3478", "turn:127.0.0.1:3478?transport=udp"), "")
	key, id := newNodeKey(t)
	tc := runClient(t, ClientConfig{URL: srv.url, Key: "k1", ID: id, Signer: key})
	tc.expectState(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	before := time.Now()
	creds, err := tc.TURN(ctx)
	if err != nil {
		t.Fatalf("TURN: %v", err)
	}
	if len(creds.ICEServers) != 2 || creds.ICEServers[0].URLs[0] != "stun:127.0.0.1:3478" || creds.ICEServers[0].Username != "" {
		t.Fatalf("ICE servers %+v: want a STUN entry without and a TURN entry with credentials", creds.ICEServers)
	}
	s := creds.ICEServers[1]
	exp, user, ok := strings.Cut(s.Username, ":")
	if !ok || user != id {
		t.Fatalf("username %q: want expiry:%s", s.Username, id)
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || sec < before.Add(10*time.Minute).Unix()-1 || sec > time.Now().Add(10*time.Minute).Unix()+1 {
		t.Fatalf("username %q: expiry is not 10 minutes from now", s.Username)
	}
	mac := hmac.New(sha1.New, []byte(testTURNSecret))
	mac.Write([]byte(s.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); s.Credential != want {
		t.Fatalf("credential %q, want base64(HMAC-SHA1(secret, username)) %q", s.Credential, want)
	}
	if d := creds.Expires.Sub(before); d < 10*time.Minute-time.Second || d > 10*time.Minute+time.Minute {
		t.Fatalf("expires %v, %v from now: want 10 minutes", creds.Expires, d)
	}

	// Unregistered ids, a wrong token, a wrong key: 401, nothing handed out.
	_, otherID := newNodeKey(t)
	tc.mu.Lock()
	token := tc.token
	tc.mu.Unlock()
	for name, q := range map[string]string{
		"unregistered": "/k1/turn?" + url.Values{"id": {otherID}, "token": {token}}.Encode(),
		"wrong token":  "/k1/turn?" + url.Values{"id": {id}, "token": {"x" + token}}.Encode(),
		"no token":     "/k1/turn?" + url.Values{"id": {id}}.Encode(),
		"wrong key":    "/k2/turn?" + url.Values{"id": {id}, "token": {token}}.Encode(),
	} {
		code, _, body := httpGet(t, srv.url+q)
		if code != http.StatusUnauthorized || strings.Contains(body, `"credential"`) {
			t.Errorf("%s: got %d %q, want 401 without credentials", name, code, body)
		}
	}
	// Once gone (the server notices the closed socket), its token gets
	// none either.
	tc.stop()
	testutil.WaitFor(t, waitFor, "the departed client's token to be refused", func() bool {
		code, _, _ := httpGet(t, srv.url+"/k1/turn?"+url.Values{"id": {id}, "token": {token}}.Encode())
		return code == http.StatusUnauthorized
	})
}

// TestTURNNotConfigured: a server without TURN answers 404, which the
// client reports as ErrNoTURN.
func TestTURNNotConfigured(t *testing.T) {
	checkGoroutines(t)
	srv := startServer(t, testConfig(), "")
	tc := runClient(t, ClientConfig{URL: srv.url, Key: "k1", ID: "plain-client"})
	tc.expectState(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := tc.TURN(ctx); !errors.Is(err, ErrNoTURN) {
		t.Fatalf("TURN on a server without it: %v, want ErrNoTURN", err)
	}
}

// startTURN runs an embedded relay on loopback until the test ends.
func startTURN(t *testing.T, allowPrivate bool) (*TURNServer, string) {
	t.Helper()
	ts, err := NewTURNServer(TURNServerConfig{
		PublicIP: netip.MustParseAddr("127.0.0.1"), RelayHost: "127.0.0.1",
		Secret: testTURNSecret, AllowPrivate: allowPrivate, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	pc, ln, err := ListenTURN("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.Serve(ctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("TURNServer.Serve: %v", err)
		}
	})
	return ts, addr
}

// turnClient is a pion TURN client of the relay at addr; tcp picks the
// relay's TCP listener.
func turnClient(t *testing.T, addr, user, pass string, tcp bool) *turn.Client {
	t.Helper()
	var conn net.PacketConn
	if tcp {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = turn.NewSTUNConn(c)
	} else {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	}
	cl, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: "catnest", RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	return cl
}

// credsFor signs username with secret as coturn's use-auth-secret does.
func credsFor(secret string, expiry time.Time, id string) (string, string) {
	user := strconv.FormatInt(expiry.Unix(), 10) + ":" + id
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(user))
	return user, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// TestTURNRelayCredentials: the relay allocates for the credentials the
// rendezvous hands out, over UDP and TCP, and refuses expired and forged
// ones.
func TestTURNRelayCredentials(t *testing.T) {
	checkGoroutines(t)
	_, addr := startTURN(t, true)
	creds, err := turnCredentials(TURNConfig{URLs: []string{"turn:" + addr}, Secret: testTURNSecret}, "alice", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good := creds.ICEServers[0]
	for _, tcp := range []bool{false, true} {
		cl := turnClient(t, addr, good.Username, good.Credential, tcp)
		relay, err := cl.Allocate()
		if err != nil {
			t.Fatalf("tcp=%v: allocation with handed-out credentials: %v", tcp, err)
		}
		relay.Close()
	}
	expUser, expPass := credsFor(testTURNSecret, time.Now().Add(-time.Minute), "alice")
	forgedUser, forgedPass := credsFor("not-the-secret", time.Now().Add(time.Hour), "alice")
	for name, c := range map[string][2]string{
		"expired":          {expUser, expPass},
		"forged":           {forgedUser, forgedPass},
		"expiry rewritten": {strconv.FormatInt(time.Now().Add(48*time.Hour).Unix(), 10) + ":alice", good.Credential},
		"no expiry":        {"alice", good.Credential},
	} {
		cl := turnClient(t, addr, c[0], c[1], false)
		if relay, err := cl.Allocate(); err == nil {
			relay.Close()
			t.Errorf("%s credentials: allocation succeeded", name)
		}
	}
}

// TestTURNRelayRefusesPrivatePeers: without AllowPrivate, the relay
// refuses permissions to loopback and private addresses other than its
// own, and relays to its own; with it, it permits them.
func TestTURNRelayRefusesPrivatePeers(t *testing.T) {
	checkGoroutines(t)
	for _, allow := range []bool{false, true} {
		ts, addr := startTURN(t, allow)
		user, pass := credsFor(testTURNSecret, time.Now().Add(time.Hour), "bob")
		cl := turnClient(t, addr, user, pass, false)
		relay, err := cl.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		for _, peer := range []string{"10.1.2.3:5000", "192.168.1.1:5000", "127.0.0.2:5000", "169.254.1.1:5000", "100.64.0.1:5000"} {
			err := cl.CreatePermission(net.UDPAddrFromAddrPort(netip.MustParseAddrPort(peer)))
			if allow && err != nil {
				t.Errorf("AllowPrivate: permission to %s refused: %v", peer, err)
			}
			if !allow && err == nil {
				t.Errorf("permission to private %s granted", peer)
			}
		}
		if !allow && ts.Denied() != 5 {
			t.Errorf("Denied() = %d, want 5", ts.Denied())
		}
		// Its own address is permitted: relayed peers talk through it.
		if err := cl.CreatePermission(relay.LocalAddr()); err != nil {
			t.Errorf("allow=%v: permission to the relay's own address refused: %v", allow, err)
		}
		if err := cl.CreatePermission(net.UDPAddrFromAddrPort(netip.MustParseAddrPort("203.0.113.7:5000"))); err != nil {
			t.Errorf("allow=%v: permission to a public address refused: %v", allow, err)
		}
		relay.Close()
	}
}

func TestInternalAddr(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1": true, "10.0.0.1": true, "172.16.5.4": true, "192.168.0.1": true, "169.254.0.1": true,
		"100.64.1.1": true, "0.1.2.3": true, "224.0.0.1": true, "::1": true, "fe80::1": true, "fd00::1": true,
		"0.0.0.0": true, "::": true, "::ffff:10.0.0.1": true, "::ffff:127.0.0.1": true, "fc00::5": true,
		"fe80::1%eth0": true, "ff02::1": true, "255.255.255.255": true, "240.0.0.1": true, "198.18.0.1": true,
		"192.0.0.8": true, "fec0::1": true, "64:ff9b::10.0.0.1": true, "64:ff9b::127.0.0.1": true,
		"64:ff9b:1::1.2.3.4": true, "2002:c0a8:0101::1": true, "::10.0.0.1": true, "::127.0.0.1": true,
		"64:ff9b::8.8.8.8": false, "2002:0808:0808::1": false, "::ffff:8.8.8.8": false,
		"8.8.8.8": false, "203.0.113.9": false, "2001:db8::1": false,
	} {
		if got := internalAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("internalAddr(%s) = %v, want %v", s, got, want)
		}
	}
}

// TestTURNRelayNoWayIntoItsHost: a client with good credentials cannot use
// the relay to reach services on the relay's own host: no TCP allocations
// (RFC 6062 CONNECT would dial any port), no datagrams to the relay's own
// address other than to live relay ports, no permission to the host's other
// addresses; relaying between two allocations still works.
func TestTURNRelayNoWayIntoItsHost(t *testing.T) {
	checkGoroutines(t)
	ts, addr := startTURN(t, false)
	user, pass := credsFor(testTURNSecret, time.Now().Add(time.Hour), "eve")

	tcpCl := turnClient(t, addr, user, pass, true)
	if a, err := tcpCl.AllocateTCP(); err == nil {
		a.Close()
		t.Errorf("TCP allocation granted: the relay would CONNECT anywhere for its clients")
	}

	// A UDP service on the relay's public address (127.0.0.1 here).
	svc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()

	cl := turnClient(t, addr, user, pass, false)
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	cl2 := turnClient(t, addr, user, pass, false)
	relay2, err := cl2.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay2.Close()

	denied := ts.Denied()
	if _, err := relay.WriteTo([]byte("to the host's service"), svc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, waitFor, "the datagram to the host's own port refused", func() bool { return ts.Denied() > denied })
	svc.SetReadDeadline(time.Now())
	if n, _, err := svc.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("the host's service got %d bytes through the relay", n)
	}

	// Relayed peers still reach each other at the relay's address.
	if err := cl2.CreatePermission(relay.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.WriteTo([]byte("hello"), relay2.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	relay2.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 100)
	if n, _, err := relay2.ReadFrom(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("relay to relay: %q, %v", buf[:n], err)
	}

	// The host's other addresses are refused even when public.
	ts.own.Store(&ownAddrs{addrs: []netip.Addr{netip.MustParseAddr("198.51.100.20")}, at: time.Now().Add(time.Hour)})
	if err := cl.CreatePermission(net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.20:53"))); err == nil {
		t.Errorf("permission to the host's other public address granted")
	}
}
