package shards

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/catnest/catnest/mesh"
)

// Link limits.
const (
	// MaxLinkLen bounds a link as text.
	MaxLinkLen = 4096
	// MaxNameLen bounds a resource's name, in bytes.
	MaxNameLen = 255
	// MaxChannelLen bounds a link's channel.
	MaxChannelLen = 64
	// LinkScheme is the scheme of resource links.
	LinkScheme = "webrtc"
	// FilesChannel is the channel of links to files shared outside any chat.
	FilesChannel = "files"
)

// Link names a resource the way the original notes do:
// webrtc://NODE@HOST:PORT/CHANNEL/MD5?m=MANIFESTHASH&n=NAME&s=SIZE. NODE is a
// node that holds it, HOST:PORT the rendezvous that node uses (empty when
// it uses none), CHANNEL "files" or the chat channel it was shared in.
type Link struct {
	Node       mesh.ID
	Rendezvous string // host:port, or empty
	Channel    string
	ID         MD5
	Manifest   Hash
	Name       string
	Size       int64
	// For, if set, names the service that fetches the resource for its
	// own use, not the user's (music: the covers and lyrics of peers'
	// tracks); its transfer carries it, and the Files view leaves such
	// transfers out. The user's fetch of such a transfer (For empty)
	// makes it the user's; the service removes only its own (RemoveFor).
	// It is not part of the link's text.
	For string
	// KeepPaused, if set, leaves a download of it the user paused paused
	// (the Transfer returned says so): the fetch only reads ahead (music's
	// prefetch of the player's next track), which is no wish to have it
	// now. Any other fetch resumes it. It is part of neither the link's
	// text nor the download's record.
	KeepPaused bool
	// Dir, if set, is the folder (absolute, on this node's machine, one
	// the node can write to) where a new download keeps its part file and
	// leaves the finished file, which it then seeds from there: `catnest
	// get -o DIR` against a node on the same machine ends with one copy
	// of a 1 GiB file, not one in the node's downloads folder and another
	// in DIR. A download already listed stays where it is. It is not part
	// of the link's text; the download's record keeps it.
	Dir string
}

// String formats the link.
func (l Link) String() string {
	q := url.Values{}
	q.Set("m", l.Manifest.String())
	q.Set("n", l.Name)
	q.Set("s", strconv.FormatInt(l.Size, 10))
	u := url.URL{
		Scheme:   LinkScheme,
		User:     url.User(string(l.Node)),
		Host:     l.Rendezvous,
		Path:     "/" + l.Channel + "/" + l.ID.String(),
		RawQuery: q.Encode(),
	}
	return u.String()
}

// ParseLink parses and checks a link. The manifest hash, name and size may be
// missing (a link typed by hand); the node and resource id may not.
func ParseLink(s string) (Link, error) {
	var l Link
	s = strings.TrimSpace(s)
	if len(s) > MaxLinkLen {
		return l, fmt.Errorf("%w: %d characters, over %d", ErrBadLink, len(s), MaxLinkLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return l, fmt.Errorf("%w: %v", ErrBadLink, err)
	}
	if u.Scheme != LinkScheme {
		return l, fmt.Errorf("%w: scheme %q, want %s://", ErrBadLink, u.Scheme, LinkScheme)
	}
	if u.User == nil {
		return l, fmt.Errorf("%w: no node id before @", ErrBadLink)
	}
	if l.Node, err = mesh.ParseID(u.User.Username()); err != nil {
		return l, fmt.Errorf("%w: node: %v", ErrBadLink, err)
	}
	if u.Host != "" {
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" {
			return l, fmt.Errorf("%w: rendezvous %q is not host:port", ErrBadLink, u.Host)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return l, fmt.Errorf("%w: rendezvous port %q", ErrBadLink, port)
		}
		l.Rendezvous = u.Host
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 {
		return l, fmt.Errorf("%w: path %q is not /CHANNEL/MD5", ErrBadLink, u.Path)
	}
	if l.Channel = parts[0]; l.Channel == "" || len(l.Channel) > MaxChannelLen || !printable(l.Channel) {
		return l, fmt.Errorf("%w: channel %.70q", ErrBadLink, l.Channel)
	}
	if l.ID, err = ParseMD5(parts[1]); err != nil {
		return l, fmt.Errorf("%w: %v", ErrBadLink, err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return l, fmt.Errorf("%w: query: %v", ErrBadLink, err)
	}
	if m := q.Get("m"); m != "" {
		if l.Manifest, err = ParseHash(m); err != nil {
			return l, fmt.Errorf("%w: %v", ErrBadLink, err)
		}
	}
	if n := q.Get("n"); n != "" {
		if l.Name, err = CleanName(n); err != nil {
			return l, fmt.Errorf("%w: %v", ErrBadLink, err)
		}
	}
	if sz := q.Get("s"); sz != "" {
		if l.Size, err = strconv.ParseInt(sz, 10, 64); err != nil || l.Size < 0 || l.Size > MaxFileSize {
			return l, fmt.Errorf("%w: size %.30q", ErrBadLink, sz)
		}
	}
	return l, nil
}

// CleanName checks a resource name from a peer or a link and returns the
// name to save it under: one path element, valid UTF-8 without control
// characters, at most MaxNameLen bytes. It never contains a separator, so
// joining it to a folder stays in that folder.
func CleanName(name string) (string, error) {
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%w: name of %d bytes, over %d", ErrBadLink, len(name), MaxNameLen)
	}
	if !utf8.ValidString(name) || !printable(name) {
		return "", fmt.Errorf("%w: name %.70q has control characters", ErrBadLink, name)
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." || name != path.Clean(name) || strings.TrimSpace(name) == "" {
		return "", fmt.Errorf("%w: name %.70q is not a plain file name", ErrBadLink, name)
	}
	return name, nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}
