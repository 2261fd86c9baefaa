package plugins

import (
	"fmt"
	"strings"

	"github.com/catnest/catnest/internal/reslist"
	"github.com/catnest/catnest/shards"
)

// A node's published plugins are a resource list (internal/reslist) named
// "plugins": its summary {count, version} rides in the node's directory
// record, and others page it with ProtoList from the node alone.
const (
	resourceName = "plugins"
	// ProtoList: request = After (16 bytes) + Limit (uint16); answer = a
	// page of the node's published list (encodePage), in MD5 order.
	ProtoList = "plugins/list/1"
)

// Wire limits of a page.
const (
	// MaxPage bounds the entries of one page.
	MaxPage = 50
	// MaxPageSize bounds an encoded page: MaxPage entries of the largest
	// texts, keys and signatures fit.
	MaxPageSize = 128 << 10
)

// Entry is a published plugin as the market lists it: what its header
// says, where shards finds it (MD5 and manifest), and its publisher's
// signature. Every field is comparable, as reslist wants.
type Entry struct {
	ID          shards.MD5  `json:"id"`
	Manifest    shards.Hash `json:"m"`
	Size        int64       `json:"s"`
	Name        string      `json:"n"`
	Description string      `json:"d,omitempty"`
	Version     string      `json:"v"`
	Author      string      `json:"a,omitempty"`
	// Permissions are the header's, sorted, separated by spaces.
	Permissions string `json:"p,omitempty"`
	Signature
	// At is when it was published (Unix ms, the publisher's clock).
	At int64 `json:"t"`
}

// Perms returns the entry's permissions as a list; never nil.
func (e Entry) Perms() []string {
	if e.Permissions == "" {
		return []string{}
	}
	return strings.Fields(e.Permissions)
}

func entryKey(e Entry) reslist.Key { return e.ID }

// entryHash hashes an entry for the list's version.
func entryHash(e Entry) uint64 { return reslist.JSONHash(e) }

func entryCost(e Entry) int64 {
	return int64(len(e.Name) + len(e.Description) + len(e.Version) + len(e.Author) + len(e.Permissions) + len(e.Key) + len(e.Sig) + len(e.Publisher))
}

// check reports what is wrong with an entry from a peer: its texts as a
// header allows them, and its signature.
func (e Entry) check() error {
	if e.Name == "" || checkText("name", e.Name, MaxName) != nil || checkText("description", e.Description, MaxDescription) != nil || checkText("author", e.Author, maxAuthor) != nil {
		return fmt.Errorf("%w: entry %s: bad name, description or author", ErrBadPage, e.ID)
	}
	if err := CheckVersion(e.Version); err != nil {
		return fmt.Errorf("%w: entry %s: %w", ErrBadPage, e.ID, err)
	}
	perms, err := ParsePermissions(e.Permissions)
	if err != nil {
		return fmt.Errorf("%w: entry %s: %w", ErrBadPage, e.ID, err)
	}
	if strings.Join(perms, " ") != e.Permissions {
		return fmt.Errorf("%w: entry %s: permissions not in order", ErrBadPage, e.ID)
	}
	if e.Size <= 0 || e.Size > MaxFile {
		return fmt.Errorf("%w: entry %s: size %d", ErrBadPage, e.ID, e.Size)
	}
	if err := e.Verify(e.Name, e.Version, e.ID); err != nil {
		return fmt.Errorf("%w: entry %s: %w", ErrBadPage, e.ID, err)
	}
	return nil
}

// pages encodes and decodes the list's pages and the requests for them.
var pages = reslist.JSONPages[Entry]{
	MaxEntries: MaxPage,
	MaxBytes:   MaxPageSize,
	Err:        ErrBadPage,
	Key:        entryKey,
	Check:      func(e Entry) error { return e.check() },
}

func encodePage(p reslist.Page[Entry]) ([]byte, error) { return pages.EncodePage(p) }

// decodePage decodes a page from a peer: bounded in bytes and entries,
// every entry checked, in strictly increasing MD5 order.
func decodePage(b []byte) (reslist.Page[Entry], error) { return pages.DecodePage(b) }

func encodeListReq(after reslist.Key, limit int) []byte { return pages.EncodeRequest(after, limit) }

func decodeListReq(p []byte) (reslist.Key, int, error) { return pages.DecodeRequest(p) }
