package plugins

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/semver"
)

// Limits of a plugin file. Every one is checked before anything is
// stored or shown: files come from peers.
const (
	// MaxFile bounds a plugin file.
	MaxFile = 512 << 10
	// maxHeaderLines and maxHeaderBytes bound the header block, which
	// must end within them.
	maxHeaderLines = 64
	maxHeaderBytes = 8 << 10
	// MaxName bounds a name, MaxDescription a description, in runes.
	MaxName        = 64
	MaxDescription = 280
	// maxVersion bounds a version string in bytes.
	maxVersion = 64
	// maxAuthor bounds the optional author line, in runes.
	maxAuthor = 100
)

// The header block's first and last lines.
const (
	headerStart = "// ==CatnestPlugin=="
	headerEnd   = "// ==/CatnestPlugin=="
)

// Header is a plugin's metadata block.
type Header struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Version     string   `json:"version"`
	Author      string   `json:"author,omitempty"`
	Permissions []string `json:"permissions"`
}

// ParseHeader reads and checks the header of a plugin file:
//
//	// ==CatnestPlugin==
//	// @name        Now playing
//	// @description Posts the track you play to the chat.
//	// @version     1.2.0
//	// @permissions player-read chat-read chat-write
//	// ==/CatnestPlugin==
//
// The block comes first (after blank lines); each line inside is a "//"
// comment, "@key value" for the keys name, description, version (semver
// without a "v"), permissions (Permissions' names, space or comma
// separated) and author. Name and version are required. The file must be
// UTF-8 without NUL bytes, at most MaxFile bytes, and default-export
// something. Every error wraps ErrBadPlugin and says what is wrong.
func ParseHeader(src []byte) (Header, error) {
	var h Header
	if len(src) > MaxFile {
		return h, fmt.Errorf("%w: file of %d bytes (at most %d)", ErrBadPlugin, len(src), MaxFile)
	}
	if !utf8.Valid(src) || bytes.IndexByte(src, 0) >= 0 {
		return h, fmt.Errorf("%w: the file is not UTF-8 text", ErrBadPlugin)
	}
	rest := bytes.TrimPrefix(src, []byte("\uFEFF"))
	started := false
	seen := map[string]bool{}
	for n, used := 0, 0; ; n++ {
		if len(rest) == 0 {
			if !started {
				return h, fmt.Errorf("%w: no header: the file must start with %q", ErrBadPlugin, headerStart)
			}
			return h, fmt.Errorf("%w: the header has no end line %q", ErrBadPlugin, headerEnd)
		}
		if n >= maxHeaderLines || used > maxHeaderBytes {
			return h, fmt.Errorf("%w: the header does not end within %d lines and %d bytes", ErrBadPlugin, maxHeaderLines, maxHeaderBytes)
		}
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		used += len(line) + 1
		rest = after
		s := strings.TrimSpace(string(line))
		if !started {
			switch s {
			case "":
				continue
			case headerStart:
				started = true
				continue
			}
			return h, fmt.Errorf("%w: no header: the file must start with %q", ErrBadPlugin, headerStart)
		}
		if s == headerEnd {
			break
		}
		if err := h.line(s, seen); err != nil {
			return Header{}, err
		}
	}
	if h.Name == "" {
		return Header{}, fmt.Errorf("%w: the header has no @name", ErrBadPlugin)
	}
	if h.Version == "" {
		return Header{}, fmt.Errorf("%w: the header has no @version", ErrBadPlugin)
	}
	if h.Permissions == nil {
		h.Permissions = []string{}
	}
	if !bytes.Contains(rest, []byte("export default")) {
		return Header{}, fmt.Errorf("%w: the file has no default export (export default class …)", ErrBadPlugin)
	}
	return h, nil
}

// line takes one line of the header block.
func (h *Header) line(s string, seen map[string]bool) error {
	body, ok := strings.CutPrefix(s, "//")
	if !ok {
		return fmt.Errorf("%w: header line %.60q is not a // comment", ErrBadPlugin, s)
	}
	body = strings.TrimSpace(body)
	if !strings.HasPrefix(body, "@") {
		return nil // a comment
	}
	key, val, _ := strings.Cut(body[1:], " ")
	if i := strings.IndexFunc(key, unicode.IsSpace); i >= 0 {
		key, val = key[:i], key[i:]+" "+val
	}
	val = strings.TrimSpace(val)
	if seen[key] {
		return fmt.Errorf("%w: @%.20s given twice", ErrBadPlugin, key)
	}
	seen[key] = true
	switch key {
	case "name":
		if err := checkText("name", val, MaxName); err != nil {
			return err
		}
		if val == "" {
			return fmt.Errorf("%w: @name is empty", ErrBadPlugin)
		}
		h.Name = val
	case "description":
		if err := checkText("description", val, MaxDescription); err != nil {
			return err
		}
		h.Description = val
	case "author":
		if err := checkText("author", val, maxAuthor); err != nil {
			return err
		}
		h.Author = val
	case "version":
		if err := CheckVersion(val); err != nil {
			return err
		}
		h.Version = val
	case "permissions":
		perms, err := ParsePermissions(val)
		if err != nil {
			return err
		}
		h.Permissions = perms
	default:
		return fmt.Errorf("%w: unknown header key @%.20s (known: name, description, version, permissions, author)", ErrBadPlugin, key)
	}
	return nil
}

// checkText checks a header value: at most max runes, no control
// characters.
func checkText(what, s string, max int) error {
	if utf8.RuneCountInString(s) > max {
		return fmt.Errorf("%w: @%s is over %d characters", ErrBadPlugin, what, max)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: @%s has control characters", ErrBadPlugin, what)
	}
	return nil
}

// CheckVersion reports whether v is a semantic version (semver.org 2.0,
// without a leading "v" and without build metadata), such as 1.0.0 or
// 2.1.0-beta.1.
func CheckVersion(v string) error {
	if len(v) > maxVersion || v == "" || !semver.IsValid("v"+v) || semver.Canonical("v"+v) != "v"+v {
		return fmt.Errorf("%w: version %.40q is not a semantic version like 1.2.3", ErrBadPlugin, v)
	}
	return nil
}

// CompareVersions orders two versions that pass CheckVersion, as semver
// does: -1, 0 or +1.
func CompareVersions(a, b string) int { return semver.Compare("v"+a, "v"+b) }

// Permissions are what a plugin may ask for, with what each lets it do.
var Permissions = map[string]string{
	"chat-read":      "receive chat messages and list the joined channels",
	"chat-write":     "post messages to chat channels as this node",
	"chat-filter":    "hide chat messages that contain given words, in this web UI",
	"player-read":    "see the track playing and its lyrics lines",
	"player-control": "play, pause and skip tracks",
	"peers":          "see peers join and leave",
	"storage":        "keep a little data of its own on this node",
	"ui-panel":       "show a panel and a toolbar button in the web UI",
}

// maxPermissions bounds the permissions a header may list.
const maxPermissions = 16

// ParsePermissions reads a permission list (names separated by spaces or
// commas): every name known, none twice. The result is sorted.
func ParsePermissions(s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(fields) > maxPermissions {
		return nil, fmt.Errorf("%w: %d permissions (at most %d)", ErrBadPlugin, len(fields), maxPermissions)
	}
	out := make([]string, 0, len(fields))
	for _, p := range fields {
		if _, ok := Permissions[p]; !ok {
			return nil, fmt.Errorf("%w: unknown permission %.40q (known: %s)", ErrBadPlugin, p, strings.Join(PermissionNames(), ", "))
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("%w: permission %q listed twice", ErrBadPlugin, p)
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}

// PermissionNames lists the known permissions, sorted.
func PermissionNames() []string {
	out := make([]string, 0, len(Permissions))
	for p := range Permissions {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
