package mesh

import (
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// peerJSID is the PeerServer's rule for ids.
var peerJSID = regexp.MustCompile(`^[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*$`)

func TestIdentityPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	a, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := LoadOrCreateIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID {
		t.Fatalf("restart changed the id: %s then %s", a.ID, b.ID)
	}
	c, err := LoadOrCreateIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == a.ID {
		t.Fatal("two data dirs gave the same id")
	}
}

func TestIDForm(t *testing.T) {
	ident, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseID(string(ident.ID)); err != nil {
		t.Fatal(err)
	}
	if !peerJSID.MatchString(string(ident.ID)) {
		t.Fatalf("%q is not a valid PeerJS id", ident.ID)
	}
	want, err := IDFromPublicKey(&ident.Key.PublicKey)
	if err != nil || want != ident.ID {
		t.Fatalf("IDFromPublicKey = %q, %v; want %q", want, err, ident.ID)
	}
	for _, bad := range []string{"", "abc", string(ident.ID[:31]) + "1", string(ident.ID[:31]) + "A", string(ident.ID) + "a"} {
		if _, err := ParseID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q) = %v, want ErrBadID", bad, err)
		}
	}
}

func TestCorruptKeyFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateIdentity(dir); err == nil {
		t.Fatal("a corrupt key file was accepted")
	}
	b, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	if string(b) != "not a key" {
		t.Fatal("the corrupt key file was overwritten")
	}
}

func TestCertificateProvesID(t *testing.T) {
	ident, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := newCertificate(ident)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cert.PEM()
	if err != nil {
		t.Fatal(err)
	}
	var der []byte
	for rest := []byte(p); ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			der = blk.Bytes
		}
	}
	got, err := idFromCertificate(der)
	if err != nil || got != ident.ID {
		t.Fatalf("idFromCertificate = %q, %v; want %q", got, err, ident.ID)
	}
}
