package webui

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/catnest/catnest/internal/pubsub"
	"github.com/catnest/catnest/mesh"
	"github.com/catnest/catnest/shards"
)

// fakeFiles is a Files kept in memory, for the API and browser tests. It
// behaves like the service where the UI can tell: shares are real files
// whose MD5 it computes, a download makes progress only when the test
// advances it, and reads of a resource wait, like the real reader, until
// the bytes they need have arrived. It is safe for concurrent use.
type fakeFiles struct {
	self mesh.ID

	mu        sync.Mutex
	transfers map[shards.MD5]*shards.Transfer
	remote    map[shards.MD5]shards.File // what other nodes share
	bytes     map[shards.MD5][]byte      // every resource's content
	pushes    map[string]*shards.PushStatus
	events    pubsub.Topic[shards.Event]
	arrived   chan struct{}      // closed and replaced when a download advances
	fail      error              // returned once by the next call, when set
	calls     []string           // "pause ID", "resume ID", "remove ID", "push ID plan n"
	opened    int                // Content readers open now
	opens     map[shards.MD5]int // Open calls by resource
	listed    int                // Files calls
	pages     []string           // SharesPage calls: "offset limit"
	// stalled, when set, is published to each new subscription before
	// its reader starts, as if the reader had been too slow for them.
	stalled []shards.Event
}

var (
	_ Files = (*fakeFiles)(nil)
)

func newFakeFiles(self mesh.ID) *fakeFiles {
	return &fakeFiles{
		self:      self,
		transfers: map[shards.MD5]*shards.Transfer{},
		remote:    map[shards.MD5]shards.File{},
		bytes:     map[shards.MD5][]byte{},
		pushes:    map[string]*shards.PushStatus{},
		arrived:   make(chan struct{}),
		opens:     map[shards.MD5]int{},
	}
}

// addRemote makes b, named name, a file that holders share.
func (f *fakeFiles) addRemote(name string, b []byte, holders ...mesh.ID) shards.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	file := shards.File{ID: md5.Sum(b), Name: name, Size: int64(len(b)), Type: contentType(name), Holders: holders}
	f.remote[file.ID] = file
	f.bytes[file.ID] = b
	f.events.Publish(shards.Event{Files: true})
	return file
}

// advance sets how much of download id has arrived, from whom, and sends
// its progress event. At the size, the download is done.
func (f *fakeFiles) advance(id shards.MD5, have int64, rate float64, sources map[mesh.ID]int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.transfers[id]
	t.Have = min(have, t.Size)
	t.Rate = rate
	t.Sources = sources
	if t.Have == t.Size {
		t.State = shards.StateDone
	}
	close(f.arrived)
	f.arrived = make(chan struct{})
	f.publish(t)
}

// failNext makes the next call return err.
func (f *fakeFiles) failNext(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeFiles) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// pageCalls returns the SharesPage calls so far, as "offset limit".
func (f *fakeFiles) pageCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.pages)
}

func (f *fakeFiles) openReaders() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opened
}

// counts returns how often Files was called and id opened.
func (f *fakeFiles) counts(id shards.MD5) (listed, opens int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listed, f.opens[id]
}

func (f *fakeFiles) transfer(id shards.MD5) (shards.Transfer, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.transfers[id]
	if !ok {
		return shards.Transfer{}, false
	}
	return *t, true
}

// publish sends a copy of t; f.mu is held.
func (f *fakeFiles) publish(t *shards.Transfer) {
	c := *t
	c.Sources = copyMap(t.Sources)
	f.events.Publish(shards.Event{Transfer: &c})
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return nil
	}
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// begin locks f and returns the injected failure, if any. The caller
// unlocks.
func (f *fakeFiles) begin() error {
	f.mu.Lock()
	err := f.fail
	f.fail = nil
	return err
}

func (f *fakeFiles) Shares(ctx context.Context) ([]shards.Transfer, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return nil, err
	}
	var out []shards.Transfer // nil when empty: the server must send []
	for _, t := range f.transfers {
		c := *t
		c.Sources = copyMap(t.Sources)
		out = append(out, c)
	}
	return out, nil
}

// SharesPage orders as the service does: newest first, then by id; and
// as it does, it leaves out a service's transfers (For set).
func (f *fakeFiles) SharesPage(ctx context.Context, offset, limit int) ([]shards.Transfer, int, error) {
	f.mu.Lock()
	f.pages = append(f.pages, fmt.Sprintf("%d %d", offset, limit))
	f.mu.Unlock()
	all, err := f.Shares(ctx)
	if err != nil {
		return nil, 0, err
	}
	all = slices.DeleteFunc(all, func(t shards.Transfer) bool { return t.For != "" })
	slices.SortFunc(all, func(a, b shards.Transfer) int {
		if c := b.Added.Compare(a.Added); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	total := len(all)
	all = all[min(offset, total):]
	if limit >= 0 && limit < len(all) {
		all = all[:limit]
	}
	return all, total, nil
}

func (f *fakeFiles) Transfer(ctx context.Context, id shards.MD5) (shards.Transfer, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return shards.Transfer{}, err
	}
	t, ok := f.transfers[id]
	if !ok {
		return shards.Transfer{}, fmt.Errorf("%w: %s", shards.ErrUnknown, id)
	}
	c := *t
	c.Sources = copyMap(t.Sources)
	return c, nil
}

func (f *fakeFiles) Share(ctx context.Context, path string) (shards.Transfer, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return shards.Transfer{}, err
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return shards.Transfer{}, fmt.Errorf("share %s: %w", path, shards.ErrNotFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return shards.Transfer{}, fmt.Errorf("share %s: %w: %v", path, shards.ErrNotFile, err)
	}
	id := shards.MD5(md5.Sum(b))
	name := filepath.Base(path)
	t := &shards.Transfer{ID: id, Name: name, Size: int64(len(b)), Have: int64(len(b)), Type: contentType(name),
		State: shards.StateSeeding, Path: path, Added: time.Now().UTC()}
	t.Link = shards.Link{Node: f.self, Channel: shards.FilesChannel, ID: id, Name: name, Size: t.Size}.String()
	f.transfers[id] = t
	f.bytes[id] = b
	f.publish(t)
	return *t, nil
}

func (f *fakeFiles) Fetch(ctx context.Context, l shards.Link) (shards.Transfer, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return shards.Transfer{}, err
	}
	if t, ok := f.transfers[l.ID]; ok {
		return *t, nil
	}
	file, ok := f.remote[l.ID]
	if !ok {
		return shards.Transfer{}, fmt.Errorf("fetch %s: %w", l.ID, shards.ErrNoHolders)
	}
	t := &shards.Transfer{ID: file.ID, Name: file.Name, Size: file.Size, Type: file.Type, State: shards.StateDownloading,
		Path: "/data/shards/" + file.ID.String(), Added: time.Now().UTC(), For: l.For}
	f.transfers[t.ID] = t
	f.publish(t)
	return *t, nil
}

// setState changes a transfer's state, as pause and resume do.
func (f *fakeFiles) setState(call string, id shards.MD5, from, to shards.State) error {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	f.calls = append(f.calls, call+" "+id.String())
	t, ok := f.transfers[id]
	if !ok {
		return fmt.Errorf("%s %s: %w", call, id, shards.ErrUnknown)
	}
	if t.State == from {
		t.State = to
		f.publish(t)
	}
	return nil
}

func (f *fakeFiles) Pause(ctx context.Context, id shards.MD5) error {
	return f.setState("pause", id, shards.StateDownloading, shards.StatePaused)
}

func (f *fakeFiles) Resume(ctx context.Context, id shards.MD5) error {
	return f.setState("resume", id, shards.StatePaused, shards.StateDownloading)
}

func (f *fakeFiles) Remove(ctx context.Context, id shards.MD5) error {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return err
	}
	f.calls = append(f.calls, "remove "+id.String())
	if _, ok := f.transfers[id]; !ok {
		return fmt.Errorf("remove %s: %w", id, shards.ErrUnknown)
	}
	delete(f.transfers, id)
	f.events.Publish(shards.Event{Removed: &id})
	return nil
}

func (f *fakeFiles) Files(ctx context.Context) ([]shards.File, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return nil, err
	}
	f.listed++
	var out []shards.File
	for _, file := range f.remote {
		file.Holders = slices.Clone(file.Holders)
		out = append(out, file)
	}
	for _, t := range f.transfers {
		if t.State == shards.StateSeeding {
			out = append(out, shards.File{ID: t.ID, Name: t.Name, Size: t.Size, Holders: []mesh.ID{f.self}})
		}
	}
	return out, nil
}

func (f *fakeFiles) Push(ctx context.Context, id shards.MD5, to []mesh.ID, plan shards.Plan) (string, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return "", err
	}
	t, ok := f.transfers[id]
	if !ok {
		return "", fmt.Errorf("push %s: %w", id, shards.ErrUnknown)
	}
	pid := fmt.Sprintf("p%d", len(f.pushes)+1)
	st := &shards.PushStatus{ID: pid, Resource: id, Plan: plan, Size: t.Size, Started: time.Now().UTC()}
	for _, n := range to {
		st.Receivers = append(st.Receivers, shards.PushReceiver{Node: n, State: "receiving"})
	}
	f.pushes[pid] = st
	f.calls = append(f.calls, fmt.Sprintf("push %s %s %d", id, plan, len(to)))
	return pid, nil
}

// setPush changes push pid's status as the service would as it goes on.
func (f *fakeFiles) setPush(pid string, change func(*shards.PushStatus)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f.pushes[pid])
}

// pushNow returns a copy of push pid's status as it is now.
func (f *fakeFiles) pushNow(pid string) shards.PushStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := *f.pushes[pid]
	c.Receivers = slices.Clone(c.Receivers)
	return c
}

// sendPush sends st as push pid's event as it is, an old status too, as
// an event that waited in a busy stream's queue comes late.
func (f *fakeFiles) sendPush(st shards.PushStatus) {
	f.events.Publish(shards.Event{Push: &st})
}

// seed makes b, named name, a file this node shares (seeding).
func (f *fakeFiles) seed(name string, b []byte) shards.File {
	file := f.addRemote(name, b, f.self)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.transfers[file.ID] = &shards.Transfer{ID: file.ID, Name: name, Size: file.Size, Have: file.Size, Type: file.Type,
		State: shards.StateSeeding, Added: time.Now().UTC()}
	return file
}

func (f *fakeFiles) PushStatus(ctx context.Context, pid string) (shards.PushStatus, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return shards.PushStatus{}, err
	}
	st, ok := f.pushes[pid]
	if !ok {
		return shards.PushStatus{}, fmt.Errorf("push %q: %w", pid, shards.ErrUnknown)
	}
	c := *st
	c.Receivers = slices.Clone(st.Receivers)
	return c, nil
}

func (f *fakeFiles) Open(ctx context.Context, id shards.MD5) (shards.Content, error) {
	defer f.mu.Unlock()
	if err := f.begin(); err != nil {
		return nil, err
	}
	b, ok := f.bytes[id]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", id, shards.ErrUnknown)
	}
	name := ""
	if t, ok := f.transfers[id]; ok {
		name = t.Name
	} else {
		name = f.remote[id].Name
	}
	f.opened++
	f.opens[id]++
	return &fakeContent{ctx: ctx, f: f, id: id, name: name, b: b}, nil
}

// fakeFilesBuffer is the buffer of the fake's subscriptions.
const fakeFilesBuffer = 64

func (f *fakeFiles) SubscribeShards() *pubsub.Subscription[shards.Event] {
	sub := f.events.Subscribe(fakeFilesBuffer)
	f.mu.Lock()
	for _, ev := range f.stalled {
		f.events.Publish(ev)
	}
	f.mu.Unlock()
	return sub
}

// fakeContent reads a resource of a fakeFiles; a read of bytes a download
// has not reached waits for them, as the real reader waits for pieces.
type fakeContent struct {
	ctx    context.Context
	f      *fakeFiles
	id     shards.MD5
	name   string
	b      []byte
	off    int64
	closed bool
}

// available is how many bytes from the start can be read now.
func (c *fakeContent) available() (int64, <-chan struct{}) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if t, ok := c.f.transfers[c.id]; ok && t.State != shards.StateSeeding && t.State != shards.StateDone {
		return t.Have, c.f.arrived
	}
	return int64(len(c.b)), nil
}

func (c *fakeContent) Read(p []byte) (int, error) {
	if c.closed {
		return 0, errors.New("read of a closed content")
	}
	if c.off >= int64(len(c.b)) {
		return 0, io.EOF
	}
	for {
		have, arrived := c.available()
		if have > c.off {
			n := copy(p, c.b[c.off:have])
			c.off += int64(n)
			return n, nil
		}
		select {
		case <-arrived:
		case <-c.ctx.Done():
			return 0, c.ctx.Err()
		}
	}
}

func (c *fakeContent) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += c.off
	case io.SeekEnd:
		offset += int64(len(c.b))
	}
	if offset < 0 {
		return 0, errors.New("seek before the start")
	}
	c.off = offset
	return offset, nil
}

func (c *fakeContent) Close() error {
	if !c.closed {
		c.closed = true
		c.f.mu.Lock()
		c.f.opened--
		c.f.mu.Unlock()
	}
	return nil
}

func (c *fakeContent) Name() string       { return c.name }
func (c *fakeContent) Size() int64        { return int64(len(c.b)) }
func (c *fakeContent) ModTime() time.Time { return time.Time{} }

// check sets download id checking the file at path, checked bytes of it
// so far ("" when it does not), and sends its event.
func (f *fakeFiles) check(id shards.MD5, path string, checked int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.transfers[id]
	t.Checking, t.Checked = path, checked
	f.publish(t)
}

// forgetPush drops push pid, as a node that restarted has none of the
// pushes it ran.
func (f *fakeFiles) forgetPush(pid string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pushes, pid)
}
