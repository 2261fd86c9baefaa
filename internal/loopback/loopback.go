// Package loopback tells whether a host name or address means this
// machine only, for the checks that keep a local service local: the web
// UI's Host check against DNS rebinding, and the CLI's choice of whether a
// node it talks to is on this machine. One function, so that they agree.
package loopback

import (
	"net"
	"strings"
)

// IsHost reports whether host, a name or an address as it appears in a URL
// or a Host header (an IPv6 address may be in brackets), means this
// machine only: "localhost" in any letter case, with or without the
// trailing dot of an absolute name, or a loopback address (127.0.0.0/8,
// ::1). An empty host or a wildcard address ("0.0.0.0", "::") means every
// interface, so it is not.
func IsHost(host string) bool {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
