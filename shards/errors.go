package shards

import "errors"

var (
	// ErrBadID is returned for a string that is not a resource id or
	// manifest hash.
	ErrBadID = errors.New("shards: bad id")
	// ErrBadLink is returned for a link that cannot be parsed.
	ErrBadLink = errors.New("shards: bad link")
	// ErrBadManifest is returned for a manifest that cannot be decoded, or
	// that does not match the hash it was fetched for.
	ErrBadManifest = errors.New("shards: bad manifest")
	// ErrBadFrame is returned for a request or answer that cannot be
	// decoded.
	ErrBadFrame = errors.New("shards: bad frame")
	// ErrTooLarge is returned for a file over MaxFileSize.
	ErrTooLarge = errors.New("shards: file too large")
	// ErrUnknown is returned for a resource this node neither shares nor
	// downloads.
	ErrUnknown = errors.New("shards: unknown resource")
	// ErrNotFile is returned when a path to share is not a regular file
	// this node can read.
	ErrNotFile = errors.New("shards: not a readable regular file")
	// ErrCorrupt is returned for a piece whose MD5 does not match.
	ErrCorrupt = errors.New("shards: piece does not match its md5")
	// ErrBadDir is returned for a Link.Dir that is not an absolute path
	// to a folder this node can write to.
	ErrBadDir = errors.New("shards: cannot save into that folder")
	// ErrNoHolders is returned when no online node holds a resource.
	ErrNoHolders = errors.New("shards: no online node holds the resource")
)

// ErrNotOwned is returned by RemoveFor for a download that is not the
// named service's: the user fetched it too, and it is theirs now.
var ErrNotOwned = errors.New("shards: the transfer is not the service's")
