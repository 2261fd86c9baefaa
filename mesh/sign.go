package mesh

import (
	"errors"
	"fmt"
)

// Signatures for services: a message that passes through other nodes on
// its way (a shards push's routed reports and orders) must say who wrote
// it, since the link it arrives on only says who passed it. Node.Sign
// signs with the node key, as directory records and relayed signals are
// signed (ECDSA P-256 over SHA-256), and carries the public key, whose
// hash is the signer's ID, so that any node can check it with
// CheckSigned and nothing but the signer's ID.
//
// The digest covers a fixed prefix and the service's context string
// before the message: a service signature is never valid as a directory
// record, a relayed signal or another service's message.

// sigPrefix separates service signatures from everything else the node
// key signs.
const sigPrefix = "catnest service signature 1\x00"

// MaxSignature bounds what Sign returns: a one-byte key length, the key
// (a P-256 SubjectPublicKeyInfo is 91 bytes) and the ASN.1 signature (at
// most 72).
const MaxSignature = 1 + 255 + maxRelaySig

// ErrBadSignature is a signature that does not check out: malformed,
// another node's key, or not over the message.
var ErrBadSignature = errors.New("mesh: bad signature")

func serviceSigned(context string, msg []byte) []byte {
	b := make([]byte, 0, len(sigPrefix)+len(context)+1+len(msg))
	b = append(b, sigPrefix...)
	b = append(b, context...)
	b = append(b, 0)
	return append(b, msg...)
}

// Sign signs msg with the node key under context, a string naming the
// service and the kind of message (it must not contain a zero byte).
// The result, at most MaxSignature bytes, is checked by CheckSigned.
func (n *Node) Sign(context string, msg []byte) ([]byte, error) {
	for i := range len(context) {
		if context[i] == 0 {
			return nil, errors.New("mesh: sign: a context with a zero byte")
		}
	}
	spki, sig, err := signWith(n.cfg.Identity, serviceSigned(context, msg))
	if err != nil {
		return nil, fmt.Errorf("mesh: sign: %w", err)
	}
	if len(spki) > 255 || len(sig) > maxRelaySig {
		return nil, errors.New("mesh: sign: the key or signature is over its limit")
	}
	b := make([]byte, 0, 1+len(spki)+len(sig))
	b = append(b, byte(len(spki)))
	b = append(b, spki...)
	return append(b, sig...), nil
}

// CheckSigned checks that sig, made by Sign, is node id's over msg under
// context. Every error wraps ErrBadSignature.
func CheckSigned(id ID, context string, msg, sig []byte) error {
	if len(sig) == 0 || len(sig) > MaxSignature || 1+int(sig[0]) > len(sig) {
		return fmt.Errorf("%w: %d bytes", ErrBadSignature, len(sig))
	}
	spki, s := sig[1:1+int(sig[0])], sig[1+int(sig[0]):]
	if len(s) == 0 || len(s) > maxRelaySig {
		return fmt.Errorf("%w: %d bytes of signature", ErrBadSignature, len(s))
	}
	if err := checkSig(id, spki, s, serviceSigned(context, msg)); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}
