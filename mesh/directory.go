package mesh

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/catnest/catnest/internal/pubsub"
)

// The directory is the list of online nodes. Every node advertises a
// signed Record, broadcast when it changes and refreshed periodically; a
// record that is not refreshed within Config.RecordTTL expires. When a link
// comes up, each end also sends the other every record it holds, so a
// newcomer learns the whole directory at once.

const (
	dirTopic = "mesh/dir"   // broadcast topic of records
	dirProto = "mesh/dir/1" // directory snapshot to a new neighbour

	// MaxRecordSize bounds one signed record on the wire.
	MaxRecordSize = 8 << 10
	// MaxResourceSize bounds the summary one service contributes.
	MaxResourceSize = 2 << 10
	// maxNeighbors bounds the neighbour list of a record.
	maxNeighbors = 64
	// MaxNeighbors is maxNeighbors for readers of records: a node with
	// more links lists only so many of them.
	MaxNeighbors = maxNeighbors
	// maxRecords bounds the directory.
	maxRecords = 10000
)

var (
	errRecordSize   = errors.New("record over the size limit")
	errRecordSig    = errors.New("record signature does not verify")
	errRecordKey    = errors.New("record key does not match its id")
	errRecordReplay = errors.New("record older than one held")
	// errDirectoryFull: a new record finds the directory full. It is this
	// node's state, not the sender's fault, so it is no offence.
	errDirectoryFull = errors.New("directory full")
)

// wireRecord is the signed body of a Record.
type wireRecord struct {
	ID        ID                         `json:"id"`
	Name      string                     `json:"name"`
	Seq       uint64                     `json:"seq"`
	Neighbors []ID                       `json:"nb"`
	Resources map[string]json.RawMessage `json:"res,omitempty"`
}

// directory holds the records of online nodes.
type directory struct {
	n *Node

	mu        sync.Mutex
	records   map[ID]*Record
	envelopes map[ID][]byte // the signed form of each record, to pass on
	resources map[string]json.RawMessage
	seq       uint64
	dirty     chan struct{} // our record needs re-issuing

	// subs hears of changes. Each subscriber's buffer holds one value,
	// so changes coalesce while it reads.
	subs pubsub.Topic[struct{}]
}

func newDirectory(n *Node) *directory {
	return &directory{
		n:         n,
		records:   make(map[ID]*Record),
		envelopes: make(map[ID][]byte),
		resources: make(map[string]json.RawMessage),
		dirty:     make(chan struct{}, 1),
	}
}

// SetResource sets this node's advertised summary for a service (e.g.
// "music": {"tracks": 120, "version": 7}); nil removes it. The record is
// re-advertised at once. The summary must be at most MaxResourceSize bytes
// of JSON.
func (n *Node) SetResource(service string, summary any) error {
	if err := checkProtocol(service); err != nil {
		return fmt.Errorf("mesh: SetResource: %w", err)
	}
	d := n.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	if summary == nil {
		delete(d.resources, service)
	} else {
		b, err := json.Marshal(summary)
		if err != nil {
			return fmt.Errorf("mesh: SetResource %s: %w", service, err)
		}
		if len(b) > MaxResourceSize {
			return fmt.Errorf("%w: resource %s is %d bytes, limit %d", ErrTooLarge, service, len(b), MaxResourceSize)
		}
		d.resources[service] = b
	}
	d.markDirty()
	return nil
}

// Directory lists the online nodes this node knows, itself included,
// sorted by name then ID.
func (n *Node) Directory() []Record {
	d := n.dir
	d.mu.Lock()
	out := make([]Record, 0, len(d.records))
	for _, r := range d.records {
		c := *r
		c.Neighbors = slices.Clone(r.Neighbors)
		c.Resources = maps.Clone(r.Resources)
		out = append(out, c)
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b Record) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	return out
}

// Lookup returns the record of node id, if it is online.
func (n *Node) Lookup(id ID) (Record, bool) {
	d := n.dir
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.records[id]
	if r == nil {
		return Record{}, false
	}
	c := *r
	c.Neighbors = slices.Clone(r.Neighbors)
	c.Resources = maps.Clone(r.Resources)
	return c, true
}

// SubscribeDirectory returns a channel that receives a value whenever the
// directory changes, and a function that ends the subscription. Changes
// coalesce: re-read Directory on each value.
func (n *Node) SubscribeDirectory() (<-chan struct{}, func()) {
	s := n.dir.subs.Subscribe(1)
	return s.C(), s.Close
}

// changed tells subscribers. d.mu is held.
func (d *directory) changed() { d.subs.Publish(struct{}{}) }

func (d *directory) markDirty() {
	select {
	case d.dirty <- struct{}{}:
	default:
	}
}

// run issues this node's record when it changes (debounced) and
// periodically, and expires stale records, until ctx ends.
func (d *directory) run(ctx context.Context) {
	cfg := &d.n.cfg
	d.issue(ctx)
	refresh := time.NewTimer(refreshAfter(cfg.RecordRefresh))
	defer refresh.Stop()
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-d.dirty:
			// Let a burst of changes (links coming up together) settle.
			t := time.NewTimer(cfg.RecordDebounce)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			// The record about to be issued reads the links and
			// resources now, so it covers the changes marked while
			// waiting: without this, a link lost and refilled within
			// one debounce cost two records, each checked by every node.
			select {
			case <-d.dirty:
			default:
			}
			d.issue(ctx)
		case <-refresh.C:
			d.issue(ctx)
			refresh.Reset(refreshAfter(cfg.RecordRefresh))
		case now := <-sweep.C:
			d.expire(now)
		case <-ctx.Done():
			return
		}
	}
}

// refreshAfter is the wait before a node's next periodic record: every,
// less up to a fifth at random. Nodes started together (a test network, a
// site powering up, 31 nodes of a benchmark in one process) would else
// refresh in step for ever, and every node would check all their
// signatures at once, a stall of every node's other work each period.
func refreshAfter(every time.Duration) time.Duration {
	return every - mrand.N(every/5+1)
}

// issue signs and broadcasts a fresh record of this node.
func (d *directory) issue(ctx context.Context) {
	n := d.n
	peers := n.Peers()
	nb := make([]ID, 0, len(peers))
	for _, p := range peers {
		nb = append(nb, p.ID)
	}
	if len(nb) > maxNeighbors {
		nb = nb[:maxNeighbors]
	}
	d.mu.Lock()
	// Seq is the clock in nanoseconds, so a restarted node's records
	// still beat the ones it sent before.
	d.seq = max(d.seq+1, uint64(time.Now().UnixNano()))
	w := wireRecord{ID: n.id, Name: n.cfg.Name, Seq: d.seq, Neighbors: nb, Resources: maps.Clone(d.resources)}
	d.mu.Unlock()
	env, err := signRecord(n.cfg.Identity, w)
	if err != nil {
		n.log.Error("cannot sign own record", "err", err)
		return
	}
	d.mu.Lock()
	d.store(w, env, time.Now())
	d.mu.Unlock()
	if _, err := n.Broadcast(ctx, dirTopic, env); err != nil {
		n.log.Warn("broadcast own record", "err", err)
	}
}

// store keeps a verified record. d.mu is held.
func (d *directory) store(w wireRecord, env []byte, now time.Time) {
	d.records[w.ID] = &Record{ID: w.ID, Name: w.Name, Seq: w.Seq, Neighbors: w.Neighbors, Resources: w.Resources, Heard: now}
	d.envelopes[w.ID] = env
	d.changed()
}

// merge keeps a signed record from peer from if it is newer than the one
// held. The signature is checked only for a record that would be kept,
// and not at all when verified says the broadcast validator did. It
// returns an error for a record the sender should be scored down for (see
// offence).
func (d *directory) merge(env []byte, from ID, verified bool) error {
	if d.holds(env) {
		return nil // the same record by another path: nothing to parse
	}
	w, err := parseRecord(env)
	if err != nil {
		return err
	}
	if w.ID == d.n.id {
		return nil // our own, echoed back
	}
	d.mu.Lock()
	old := d.records[w.ID]
	full := old == nil && len(d.records) >= maxRecords
	d.mu.Unlock()
	if old != nil && w.Seq <= old.Seq {
		if w.Seq < old.Seq {
			return errRecordReplay
		}
		return nil // the same record by another path
	}
	if full {
		return errDirectoryFull
	}
	if !verified {
		if _, err := d.open(env); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur := d.records[w.ID]; cur != nil && cur.Seq >= w.Seq {
		return nil // a newer one came meanwhile
	}
	d.store(w, env, time.Now())
	return nil
}

// holds reports whether env is byte for byte the record held for its
// node, which was verified when it was stored. A new link brings a
// snapshot of every record its peer holds, most of them held here already,
// and records come again by broadcast after a snapshot brought them: this
// spares a JSON parse and a signature check for each.
func (d *directory) holds(env []byte) bool {
	spki, _, ok := cutUvarintPrefixed(env, 256)
	if !ok {
		return false
	}
	id := idFromSPKI(spki)
	d.mu.Lock()
	defer d.mu.Unlock()
	held := d.envelopes[id]
	return held != nil && bytes.Equal(held, env)
}

// validate is the broadcast validator of records: a record held already
// passes unchecked, any other must carry a valid signature.
func (d *directory) validate(m BroadcastMsg) error {
	if d.holds(m.Payload) {
		return nil
	}
	_, err := d.open(m.Payload)
	return err
}

// open is openRecord, through the shared SignatureCache if there is one.
func (d *directory) open(env []byte) (wireRecord, error) {
	c := d.n.cfg.SignatureCache
	if c == nil {
		return openRecord(env)
	}
	sum := sha256.Sum256(env)
	if c.verified(sum) {
		return parseRecord(env)
	}
	w, err := openRecord(env)
	if err == nil {
		c.add(sum)
	}
	return w, err
}

// SignatureCache remembers the records whose signature verified, by the
// SHA-256 of their signed bytes, for the nodes that share it (see
// Config.SignatureCache). Only records that verified are kept, so a forged
// or altered record is always checked, and fails. It holds up to twice
// the size NewSignatureCache was given. It is safe for concurrent use.
type SignatureCache struct {
	mu       sync.Mutex
	size     int
	cur, old map[[32]byte]struct{}
}

// NewSignatureCache returns a cache of about size records.
func NewSignatureCache(size int) *SignatureCache {
	return &SignatureCache{size: max(1, size), cur: make(map[[32]byte]struct{})}
}

func (c *SignatureCache) verified(sum [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[sum]; ok {
		return true
	}
	_, ok := c.old[sum]
	return ok
}

// add keeps sum; when the current generation is full, the older one is
// dropped, so the cache stays bounded and keeps the recent records.
func (c *SignatureCache) add(sum [32]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.size {
		c.old, c.cur = c.cur, make(map[[32]byte]struct{}, c.size)
	}
	c.cur[sum] = struct{}{}
}

// expire drops records not refreshed within the TTL.
func (d *directory) expire(now time.Time) {
	ttl := d.n.cfg.RecordTTL
	d.mu.Lock()
	defer d.mu.Unlock()
	gone := false
	for id, r := range d.records {
		if id != d.n.id && now.Sub(r.Heard) > ttl {
			delete(d.records, id)
			delete(d.envelopes, id)
			gone = true
		}
	}
	if gone {
		d.changed()
	}
}

// onBroadcast takes a record that arrived by broadcast.
func (d *directory) onBroadcast(m BroadcastMsg) {
	if err := d.merge(m.Payload, m.From, true); offence(err) {
		d.n.Penalize(m.From, "directory: "+err.Error())
	}
}

// offence reports whether merge's err is the sender's fault. A replay can
// be honest (an old copy by a slow path), and a full directory is this
// node's state; anything else was forged or broken by whoever passed it on.
func offence(err error) bool {
	return err != nil && !errors.Is(err, errRecordReplay) && !errors.Is(err, errDirectoryFull)
}

// snapshot encodes every held record for a new neighbour: a list of
// uvarint-length-prefixed envelopes, cut at the frame limit.
func (d *directory) snapshot() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b []byte
	for _, env := range d.envelopes {
		if len(b)+len(env)+binary.MaxVarintLen32 > MaxPayload(Ctl) {
			break
		}
		b = binary.AppendUvarint(b, uint64(len(env)))
		b = append(b, env...)
	}
	return b
}

// handleSnapshot merges a neighbour's directory snapshot.
func (d *directory) handleSnapshot(ctx context.Context, m *Message) ([]byte, error) {
	b := m.Payload
	bad := 0
	for len(b) > 0 {
		size, k := binary.Uvarint(b)
		if k <= 0 || size > MaxRecordSize || size > uint64(len(b)-k) {
			d.n.Penalize(m.From, "directory snapshot: bad framing")
			return nil, nil
		}
		env := b[k : k+int(size)]
		b = b[k+int(size):]
		if err := d.merge(env, m.From, false); offence(err) {
			bad++
		}
	}
	if bad > 0 {
		d.n.Penalize(m.From, fmt.Sprintf("directory snapshot: %d bad records", bad))
	}
	return nil, nil
}

// sendSnapshot gives a new neighbour our directory.
func (d *directory) sendSnapshot(ctx context.Context, to ID) {
	if err := d.n.Send(ctx, to, dirProto, d.snapshot()); err != nil {
		d.n.log.Debug("directory snapshot", "peer", to.Short(), "err", err)
	}
}

// Envelope: uvarint len + SPKI | uvarint len + ASN.1 signature | body JSON.
// The signature is ECDSA P-256 over SHA-256 of the body.

func signRecord(ident *Identity, w wireRecord) ([]byte, error) {
	body, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(&ident.Key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, ident.Key, sum[:])
	if err != nil {
		return nil, err
	}
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(spki)))
	b = append(b, spki...)
	b = binary.AppendUvarint(b, uint64(len(sig)))
	b = append(b, sig...)
	b = append(b, body...)
	if len(b) > MaxRecordSize {
		return nil, errRecordSize
	}
	return b, nil
}

// openRecord checks a signed record and returns its body.
func openRecord(env []byte) (wireRecord, error) {
	w, err := parseRecord(env)
	if err != nil {
		return w, err
	}
	spki, rest, _ := cutUvarintPrefixed(env, 256)
	sig, body, _ := cutUvarintPrefixed(rest, 128)
	pub, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return w, fmt.Errorf("record key: %w", err)
	}
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return w, errors.New("record key is not ECDSA")
	}
	sum := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(ek, sum[:], sig) {
		return w, errRecordSig
	}
	return w, nil
}

// parseRecord checks a record's form, size and that its key hashes to its
// id, without the (costly) signature check.
func parseRecord(env []byte) (wireRecord, error) {
	var w wireRecord
	if len(env) > MaxRecordSize {
		return w, errRecordSize
	}
	spki, rest, ok := cutUvarintPrefixed(env, 256)
	if !ok {
		return w, errors.New("record: bad key field")
	}
	_, body, ok := cutUvarintPrefixed(rest, 128)
	if !ok {
		return w, errors.New("record: bad signature field")
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return w, fmt.Errorf("record body: %w", err)
	}
	if w.ID != idFromSPKI(spki) {
		return w, errRecordKey
	}
	if len(w.Neighbors) > maxNeighbors {
		return w, fmt.Errorf("record lists %d neighbours, limit %d", len(w.Neighbors), maxNeighbors)
	}
	for _, id := range w.Neighbors {
		if _, err := ParseID(string(id)); err != nil {
			return w, fmt.Errorf("record neighbour: %w", err)
		}
	}
	w.Name = cleanName(w.Name)
	if w.Neighbors == nil {
		w.Neighbors = []ID{}
	}
	if w.Resources == nil {
		w.Resources = map[string]json.RawMessage{}
	}
	return w, nil
}

func cutUvarintPrefixed(b []byte, limit uint64) ([]byte, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > limit || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}
