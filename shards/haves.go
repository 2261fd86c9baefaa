package shards

import (
	"errors"
	"slices"
	"time"

	"github.com/catnest/catnest/mesh"
)

// haveBackoffMax bounds, in HaveIntervals, how long a linked peer that
// holds none of a resource waits before a download asks it again (64 s at
// the default interval). Every download used to ask every linked peer
// every few seconds: 30 downloads and 32 peers made about 160 have
// requests a second, nearly all answered "none", each costing the asked
// node a request slot and a catalog lookup.
const haveBackoffMax = 32

// idlePeer is what a download remembers of a peer whose part ended: when,
// the wait it had earned as a holder (wait), and how many times in a row
// it answered that it does not have the resource at all, or failed (level).
// A peer that is not a known holder waits HaveInterval·2^level, up to
// haveBackoffMax HaveIntervals; a known holder (the link's node, the
// catalog's) and a peer that downloads the resource too (it answered an
// empty bitfield: it will have pieces soon) wait only as long as a holder.
// A known holder that itself failed to serve the manifest (asHolder: the
// link's node online but no longer sharing it, a stale catalog entry)
// backs off like a peer that holds nothing, or every download of a link
// whose node dropped the file asked that node every HaveInterval for good.
// Fields are guarded by the download's mu.
type idlePeer struct {
	at       time.Time
	wait     time.Duration
	level    int
	asHolder bool
}

// ended records the end of the peer's part at now with err.
func (ip *idlePeer) ended(cfg DownloadsConfig, now time.Time, err error) {
	ip.at = now
	quiet := errors.Is(err, errNoPieces) || errors.Is(err, errOtherManifest)
	ip.wait = cfg.HaveInterval
	if quiet {
		ip.wait *= 3
	}
	if errors.Is(err, errStalled) {
		// Not straight back to taking pieces it may sit on again.
		ip.wait = max(ip.wait, cfg.RequestTimeout)
	}
	var re *mesh.RemoteError
	switch {
	case err == nil, errors.Is(err, errStalled):
		// It had pieces: it was fetched from until it had no more, or
		// it stopped answering (its own wait, above).
		ip.level = 0
	case errors.Is(err, errNoPieces) && !errors.As(err, &re):
		// It knows the manifest and holds nothing yet: a downloader.
		ip.level = 0
	default:
		// It does not have the resource (a remote error), serves
		// another manifest, or could not be asked.
		ip.level = min(ip.level+1, 30)
	}
}

// due is when the peer is asked again; holder: it is a known holder.
func (ip *idlePeer) due(cfg DownloadsConfig, holder bool) time.Time {
	wait := ip.wait
	if ip.level > 0 && (!holder || ip.asHolder) {
		// Doubled a step at a time up to the cap: HaveInterval<<level
		// overflows for long intervals and high levels.
		most, back := haveBackoffMax*cfg.HaveInterval, cfg.HaveInterval
		for range ip.level {
			if back >= most {
				break
			}
			back *= 2
		}
		wait = max(wait, min(back, most))
	}
	return ip.at.Add(wait)
}

// duePeers lists the candidates to ask now (for the manifest, or for
// their have): those not running whose idle record, if any, says they
// are due; the first holders of cands are known holders, whose backoff
// earned while they were not does not count, so a peer that turns into
// one (it advertises the resource now, or the link's node came online) is
// asked at once. Those never asked come first (in the order of cands),
// then the others by when they were last asked: the manifest asks take
// only the first few (manifestAsks), and in the order of cands alone
// the holders that never answer, due again before the others had their
// turn, kept a holder listed after them from being asked for minutes.
// The records of peers gone are pruned. dl.mu is held.
func (dl *download) duePeers(now time.Time, cands []mesh.ID, holders int, running map[mesh.ID]bool) []mesh.ID {
	dl.pruneIdle(now, cands, running)
	var due []mesh.ID
	for k, id := range cands {
		if running[id] {
			continue
		}
		if ip := dl.idle[id]; ip != nil && now.Before(ip.due(dl.d.cfg, k < holders)) {
			continue
		}
		due = append(due, id)
	}
	slices.SortStableFunc(due, func(a, b mesh.ID) int {
		return dl.lastAsked(a).Compare(dl.lastAsked(b))
	})
	return due
}

// lastAsked is when peer id's last ask or part ended; zero if never (or
// since it showed it downloads the resource: fetching). dl.mu is held.
func (dl *download) lastAsked(id mesh.ID) time.Time {
	if ip := dl.idle[id]; ip != nil {
		return ip.at
	}
	return time.Time{}
}

// idleEnded records the end of the ask or the part of peer id at now
// with err (idlePeer.ended); asHolder: it was asked for the manifest as a
// known holder, so its backoff counts while it stays one. dl.mu is held.
func (dl *download) idleEnded(id mesh.ID, now time.Time, err error, asHolder bool) {
	ip := dl.idle[id]
	if ip == nil {
		ip = new(idlePeer)
		dl.idle[id] = ip
	}
	ip.ended(dl.d.cfg, now, err)
	ip.asHolder = asHolder
}

// askedHave notes that peer from asked this node for its have of id: it
// downloads id and so knows its manifest (have requests follow the
// manifest), and a download of id still without one asks it at once.
func (d *downloads) askedHave(id MD5, from mesh.ID) {
	dl := d.get(id)
	if dl == nil {
		return
	}
	dl.mu.Lock()
	dl.fetching(from)
	dl.mu.Unlock()
}

// fetching notes that peer id fetches blocks of this resource from this
// node, or asks for its have: it is downloading it and knows the manifest,
// maybe holds pieces, so a backoff it earned by holding none is dropped
// and it is asked again at once; dl.mu is held.
func (dl *download) fetching(id mesh.ID) {
	ip := dl.idle[id]
	if ip == nil || ip.level == 0 {
		return
	}
	ip.level, ip.at = 0, time.Time{}
	dl.signal() // the run loop looks at who is due
}

// pruneIdle drops the entries of peers that are neither candidates nor
// running once their backoff is over, so that ids that come and go cost
// nothing; a peer whose link flaps keeps its backoff meanwhile. Should
// absent peers still outnumber the candidates many times over (a churn of
// new ids), they go at once. dl.mu is held.
func (dl *download) pruneIdle(now time.Time, cands []mesh.ID, running map[mesh.ID]bool) {
	keep := haveBackoffMax * dl.d.cfg.HaveInterval
	crowded := len(dl.idle) > 4*len(cands)+64
	for id, ip := range dl.idle {
		if running[id] || slices.Contains(cands, id) {
			continue
		}
		if crowded || now.Sub(ip.at) > keep {
			delete(dl.idle, id)
		}
	}
}

// pieceWait says whether a download that has its manifest waits for a
// holder, for Transfer.Waiting: WaitNoHolder when no peer online offers a
// piece it lacks (its holders went offline, or stopped sharing it), ""
// when one does or pieces are being pushed to it. decided is false while
// a peer asked (running) for the first time in this run (it has no idle
// record) has not answered what it holds: the wait stays as it was, or it
// flapped to no_holder as the pieces' phase starts. A peer asked anew
// does not hold it: two linked peers that answer their haves slowly, in
// turn, kept one asked at all times and no_holder from ever showing.
// dl.mu is held.
func (dl *download) pieceWait(running map[mesh.ID]bool, pushed bool) (w Wait, decided bool) {
	if pushed {
		return "", true
	}
	for i, n := range dl.avail {
		if n > 0 && !dl.have.Has(i) {
			return "", true
		}
	}
	for id := range running {
		if dl.peers[id] == nil && dl.idle[id] == nil {
			return "", false
		}
	}
	return WaitNoHolder, true
}
