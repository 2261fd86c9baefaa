package subsonic

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// The buckets: the top-level "subsonic" holds one child per kind.
var (
	bucketTop       = []byte("subsonic")
	bucketSettings  = []byte("settings")
	bucketPlaylists = []byte("playlists")
	bucketStars     = []byte("stars")
	bucketRatings   = []byte("ratings")
	bucketPlays     = []byte("plays")
	bucketNow       = []byte("nowplaying")
	bucketCreated   = []byte("created")

	keyUser     = []byte("user")
	keyPassword = []byte("password")
)

// Limits of what a client can make the node keep.
const (
	maxPlaylists     = 1000
	maxPlaylistSongs = 10_000
	maxNameLen       = 256
	maxCommentLen    = 4096
	maxStars         = 100_000
	maxRatings       = 100_000
	maxPlays         = 1_000_000
	maxNowPlaying    = 64
	maxCreated       = 1_000_000
	maxUserLen       = 128
	maxPasswordLen   = 512
)

// plays is how often and when a song was last played.
type plays struct {
	Count int64     `json:"count"`
	Last  time.Time `json:"last"`
}

// storedPlaylist is a playlist as kept. Songs are ids, kept while the
// song is not in the library (offline or banned), so that it is back in
// the list when it is back online.
type storedPlaylist struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Comment string    `json:"comment"`
	Owner   string    `json:"owner"`
	Public  bool      `json:"public"`
	Songs   []string  `json:"songs"`
	Created time.Time `json:"created"`
	Changed time.Time `json:"changed"`
}

// NowPlaying is a song a Subsonic app said it is playing (scrobble with
// submission=false), as the web UI shows it.
type NowPlaying struct {
	User   string    `json:"user"`
	Player string    `json:"player"` // the app's name (the c parameter)
	ID     string    `json:"id"`     // the song's id: its MD5
	Title  string    `json:"title"`
	Artist string    `json:"artist"`
	Album  string    `json:"album"`
	Since  time.Time `json:"since"`
	// Duration of the song in seconds: the entry is shown until it is
	// over (and a minute more).
	Duration float64 `json:"duration"`
}

// store is what the service keeps in the database, mirrored in memory.
// Its methods are safe for concurrent use.
type store struct {
	db *bbolt.DB

	mu        sync.Mutex
	user      string
	password  string
	playlists map[string]*storedPlaylist
	stars     map[string]time.Time
	ratings   map[string]int
	plays     map[string]plays
	now       map[string]NowPlaying // by user and player
	created   map[string]time.Time
	newAlbums map[string]time.Time // created, not yet written
}

func openStore(db *bbolt.DB) (*store, error) {
	st := &store{db: db, playlists: map[string]*storedPlaylist{}, stars: map[string]time.Time{},
		ratings: map[string]int{}, plays: map[string]plays{}, now: map[string]NowPlaying{},
		created: map[string]time.Time{}, newAlbums: map[string]time.Time{}}
	err := db.Update(func(tx *bbolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(bucketTop)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketSettings, bucketPlaylists, bucketStars, bucketRatings, bucketPlays, bucketNow, bucketCreated} {
			if _, err := top.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		set := top.Bucket(bucketSettings)
		st.user, st.password = string(set.Get(keyUser)), string(set.Get(keyPassword))
		load := func(name []byte, f func(k string, v []byte) error) error {
			return top.Bucket(name).ForEach(func(k, v []byte) error { return f(string(k), v) })
		}
		return errors.Join(
			load(bucketPlaylists, func(k string, v []byte) error {
				var p storedPlaylist
				if err := json.Unmarshal(v, &p); err != nil {
					return fmt.Errorf("playlist %s: %w", k, err)
				}
				st.playlists[k] = &p
				return nil
			}),
			load(bucketStars, func(k string, v []byte) error { return decodeTime(v, st.stars, k) }),
			load(bucketCreated, func(k string, v []byte) error { return decodeTime(v, st.created, k) }),
			load(bucketRatings, func(k string, v []byte) error {
				n, err := strconv.Atoi(string(v))
				st.ratings[k] = n
				return err
			}),
			load(bucketPlays, func(k string, v []byte) error {
				var p plays
				err := json.Unmarshal(v, &p)
				st.plays[k] = p
				return err
			}),
			load(bucketNow, func(k string, v []byte) error {
				var n NowPlaying
				err := json.Unmarshal(v, &n)
				st.now[k] = n
				return err
			}),
		)
	})
	if err != nil {
		return nil, fmt.Errorf("subsonic: open store: %w", err)
	}
	return st, nil
}

func decodeTime(v []byte, m map[string]time.Time, k string) error {
	var t time.Time
	if err := t.UnmarshalBinary(v); err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	m[k] = t
	return nil
}

// update runs f on the child bucket name.
func (st *store) update(name []byte, f func(b *bbolt.Bucket) error) error {
	err := st.db.Update(func(tx *bbolt.Tx) error { return f(tx.Bucket(bucketTop).Bucket(name)) })
	if err != nil {
		return fmt.Errorf("subsonic: store: %w", err)
	}
	return nil
}

func (st *store) credentials() (user, password string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.user, st.password
}

func (st *store) setCredentials(user, password string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	err := st.update(bucketSettings, func(b *bbolt.Bucket) error {
		return errors.Join(b.Put(keyUser, []byte(user)), b.Put(keyPassword, []byte(password)))
	})
	if err == nil {
		st.user, st.password = user, password
	}
	return err
}

// albumCreated is when an album was first seen; a new album is seen now
// (kept by flushCreated).
func (st *store) albumCreated(id string) time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	if t, ok := st.created[id]; ok {
		return t
	}
	t := time.Now().UTC().Truncate(time.Second)
	if len(st.created) < maxCreated {
		st.created[id] = t
		st.newAlbums[id] = t
	}
	return t
}

// flushCreated writes the albums seen first since the last call.
func (st *store) flushCreated() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.newAlbums) == 0 {
		return nil
	}
	err := st.update(bucketCreated, func(b *bbolt.Bucket) error {
		for id, t := range st.newAlbums {
			v, _ := t.MarshalBinary()
			if err := b.Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	})
	clear(st.newAlbums)
	return err
}

func (st *store) starred(id string) time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.stars[id]
}

func (st *store) rating(id string) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.ratings[id]
}

func (st *store) playsOf(id string) plays {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.plays[id]
}

// allStars returns the starred ids.
func (st *store) allStars() map[string]time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return maps.Clone(st.stars)
}

// setStars stars (on) or unstars ids, all or none.
func (st *store) setStars(ids []string, on bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now().UTC().Truncate(time.Millisecond)
	if on {
		n := len(st.stars)
		for _, id := range ids {
			if _, ok := st.stars[id]; !ok {
				n++
			}
		}
		if n > maxStars {
			return errorf(codeGeneric, "at most %d stars", maxStars)
		}
	}
	err := st.update(bucketStars, func(b *bbolt.Bucket) error {
		for _, id := range ids {
			var err error
			if on {
				v, _ := now.MarshalBinary()
				err = b.Put([]byte(id), v)
			} else {
				err = b.Delete([]byte(id))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if on {
			if _, ok := st.stars[id]; !ok {
				st.stars[id] = now
			}
		} else {
			delete(st.stars, id)
		}
	}
	return nil
}

// setRating sets a rating of 1 to 5, or removes it (0).
func (st *store) setRating(id string, r int) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.ratings[id]; !ok && r > 0 && len(st.ratings) >= maxRatings {
		return errorf(codeGeneric, "at most %d ratings", maxRatings)
	}
	err := st.update(bucketRatings, func(b *bbolt.Bucket) error {
		if r == 0 {
			return b.Delete([]byte(id))
		}
		return b.Put([]byte(id), []byte(strconv.Itoa(r)))
	})
	if err != nil {
		return err
	}
	if r == 0 {
		delete(st.ratings, id)
	} else {
		st.ratings[id] = r
	}
	return nil
}

// played counts plays of songs at the given times.
func (st *store) played(ids []string, at []time.Time) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	next := maps.Clone(st.plays)
	for i, id := range ids {
		p, ok := next[id]
		if !ok && len(next) >= maxPlays {
			continue
		}
		p.Count++
		if at[i].After(p.Last) {
			p.Last = at[i]
		}
		next[id] = p
	}
	err := st.update(bucketPlays, func(b *bbolt.Bucket) error {
		for _, id := range ids {
			if p, ok := next[id]; ok {
				v, _ := json.Marshal(p)
				if err := b.Put([]byte(id), v); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		st.plays = next
	}
	return err
}

// nowKey is the key of a player's now-playing entry.
func nowKey(user, player string) string { return user + "\x00" + player }

// setNowPlaying records what a player plays now; the oldest entry makes
// room when there are maxNowPlaying.
func (st *store) setNowPlaying(n NowPlaying) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	key := nowKey(n.User, n.Player)
	var drop string
	if _, ok := st.now[key]; !ok && len(st.now) >= maxNowPlaying {
		for k, v := range st.now {
			if drop == "" || v.Since.Before(st.now[drop].Since) {
				drop = k
			}
		}
	}
	err := st.update(bucketNow, func(b *bbolt.Bucket) error {
		v, _ := json.Marshal(n)
		if drop != "" {
			if err := b.Delete([]byte(drop)); err != nil {
				return err
			}
		}
		return b.Put([]byte(key), v)
	})
	if err != nil {
		return err
	}
	if drop != "" {
		delete(st.now, drop)
	}
	st.now[key] = n
	return nil
}

// nowPlaying lists what is playing at t: entries whose song is not over
// a minute ago, newest first.
func (st *store) nowPlaying(t time.Time) []NowPlaying {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []NowPlaying
	for _, n := range st.now {
		if nowPlayingLive(n, t) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b NowPlaying) int { return b.Since.Compare(a.Since) })
	return out
}

// nowPlayingLive reports whether an entry is still shown at t: until a
// minute after its song ends, and an hour at most (a song of unknown
// length).
func nowPlayingLive(n NowPlaying, t time.Time) bool {
	d := time.Duration(n.Duration*float64(time.Second)) + time.Minute
	if n.Duration <= 0 || d > time.Hour {
		d = time.Hour
	}
	return t.Sub(n.Since) < d
}

// playlist returns a copy of a playlist.
func (st *store) playlist(id string) (storedPlaylist, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	p, ok := st.playlists[id]
	if !ok {
		return storedPlaylist{}, false
	}
	c := *p
	c.Songs = slices.Clone(p.Songs)
	return c, true
}

// allPlaylists returns copies of the playlists, by name.
func (st *store) allPlaylists() []storedPlaylist {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]storedPlaylist, 0, len(st.playlists))
	for _, p := range st.playlists {
		c := *p
		c.Songs = slices.Clone(p.Songs)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b storedPlaylist) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(len(a.ID), len(b.ID)), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// createPlaylist keeps a new playlist and returns its id.
func (st *store) createPlaylist(p storedPlaylist) (string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.playlists) >= maxPlaylists {
		return "", errorf(codeGeneric, "at most %d playlists", maxPlaylists)
	}
	err := st.update(bucketPlaylists, func(b *bbolt.Bucket) error {
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		p.ID = strconv.FormatUint(seq, 10)
		v, _ := json.Marshal(p)
		return b.Put([]byte(p.ID), v)
	})
	if err != nil {
		return "", err
	}
	st.playlists[p.ID] = &p
	return p.ID, nil
}

// editPlaylist changes a playlist with f, which may refuse.
func (st *store) editPlaylist(id string, f func(p *storedPlaylist) error) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	old, ok := st.playlists[id]
	if !ok {
		return notFound("playlist", id)
	}
	p := *old
	p.Songs = slices.Clone(old.Songs)
	if err := f(&p); err != nil {
		return err
	}
	p.Changed = time.Now().UTC().Truncate(time.Millisecond)
	err := st.update(bucketPlaylists, func(b *bbolt.Bucket) error {
		v, _ := json.Marshal(p)
		return b.Put([]byte(id), v)
	})
	if err != nil {
		return err
	}
	st.playlists[id] = &p
	return nil
}

func (st *store) deletePlaylist(id string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.playlists[id]; !ok {
		return notFound("playlist", id)
	}
	if err := st.update(bucketPlaylists, func(b *bbolt.Bucket) error { return b.Delete([]byte(id)) }); err != nil {
		return err
	}
	delete(st.playlists, id)
	return nil
}
