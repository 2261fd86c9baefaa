package mesh_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/mesh/meshtest"
)

// signer is a node (not served) whose key signs.
func signer(tb testing.TB) *mesh.Node {
	tb.Helper()
	ident, err := mesh.NewIdentity()
	if err != nil {
		tb.Fatal(err)
	}
	cfg := mesh.DefaultConfig()
	cfg.Identity = ident
	cfg.Transport = meshtest.NewNetwork().Transport(ident.ID)
	n, err := mesh.NewNode(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// TestSignedByTheNodeOnly: a signature checks out for its node, context
// and message only; anything else is ErrBadSignature.
func TestSignedByTheNodeOnly(t *testing.T) {
	alice, bob := signer(t), signer(t)
	msg := []byte("member 20 holds pieces 0-255")
	sig, err := alice.Sign("test report", msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) > mesh.MaxSignature {
		t.Errorf("a signature of %d bytes, over MaxSignature %d", len(sig), mesh.MaxSignature)
	}
	if err := mesh.CheckSigned(alice.ID(), "test report", msg, sig); err != nil {
		t.Fatalf("alice's own signature: %v", err)
	}
	bobs, err := bob.Sign("test report", msg)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(sig)
	flipped[len(flipped)-1] ^= 1
	for _, c := range []struct {
		name    string
		id      mesh.ID
		context string
		msg     []byte
		sig     []byte
	}{
		{"another node's id", bob.ID(), "test report", msg, sig},
		{"bob's signature as alice's", alice.ID(), "test report", msg, bobs},
		{"another context", alice.ID(), "test order", msg, sig},
		{"another message", alice.ID(), "test report", []byte("member 20 holds pieces 0-254"), sig},
		{"the context moved into the message", alice.ID(), "test", append([]byte(" report\x00"), msg...), sig},
		{"a flipped bit", alice.ID(), "test report", msg, flipped},
		{"cut short", alice.ID(), "test report", msg, sig[:len(sig)-1]},
		{"empty", alice.ID(), "test report", msg, nil},
		{"over the limit", alice.ID(), "test report", msg, append(bytes.Clone(sig), make([]byte, mesh.MaxSignature)...)},
	} {
		if err := mesh.CheckSigned(c.id, c.context, c.msg, c.sig); !errors.Is(err, mesh.ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", c.name, err)
		}
	}
	if _, err := alice.Sign("a\x00b", msg); err == nil {
		t.Error("a context with a zero byte was signed")
	}
}

// FuzzCheckSigned: any bytes as a signature are ErrBadSignature or
// alice's own signature over the message.
func FuzzCheckSigned(f *testing.F) {
	alice := signer(f)
	msg := []byte("end of push 1")
	sig, err := alice.Sign("fuzz", msg)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sig, msg)
	f.Add(sig[:10], msg)
	f.Add([]byte{255, 1, 2}, msg)
	f.Fuzz(func(t *testing.T, sig, m []byte) {
		err := mesh.CheckSigned(alice.ID(), "fuzz", m, sig)
		if err != nil && !errors.Is(err, mesh.ErrBadSignature) {
			t.Fatalf("an error that is not ErrBadSignature: %v", err)
		}
		if err == nil && !bytes.Equal(m, msg) {
			t.Fatalf("a signature over %q checks out over %q", msg, m)
		}
	})
}

// A message that passes through other nodes carries its author's
// signature; whoever receives it checks it against the author's ID alone.
func ExampleNode_Sign() {
	ident, _ := mesh.NewIdentity()
	cfg := mesh.DefaultConfig()
	cfg.Identity = ident
	cfg.Transport = meshtest.NewNetwork().Transport(ident.ID)
	n, _ := mesh.NewNode(cfg)

	report := []byte("holds every piece")
	sig, _ := n.Sign("example report", report)
	fmt.Println(mesh.CheckSigned(n.ID(), "example report", report, sig) == nil)
	fmt.Println(mesh.CheckSigned(n.ID(), "example report", []byte("holds no piece"), sig) == nil)
	// Output:
	// true
	// false
}
