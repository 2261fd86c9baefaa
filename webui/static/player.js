// The music player: one <audio> element and its bar, made once and kept
// in <body> outside the view, so that playback goes on while the user
// switches views. The Music view hands it a queue; the player plays it
// with next/previous, shuffle, repeat and volume, shows synced lyrics,
// fetches the start of the next track ahead, and feeds the browser's Media
// Session (title, artist, cover, media keys).
//
// Tracks are the objects of GET /api/music/tracks. A track that goes
// offline while it plays keeps playing: the stream reader already has its
// sources, and a library change never reloads the audio element.
import { h } from './dom.js';
import { t, onLangChange } from './i18n/index.js';

export const streamPath = (id) => `api/music/tracks/${encodeURIComponent(id)}/stream`;
export const coverPath = (id, thumb) => `api/music/tracks/${encodeURIComponent(id)}/cover${thumb ? '?thumb=1' : ''}`;
const lyricsPath = (id) => `api/music/tracks/${encodeURIComponent(id)}/lyrics`;

// prefetchBytes is how much of the next track is fetched ahead: enough
// for its first seconds at any bitrate, so that it starts at once even
// when its pieces come from a peer.
const prefetchBytes = 512 << 10;
const volumeKey = 'catnest.volume';

// formatTime shows seconds as m:ss (or h:mm:ss).
export function formatTime(secs) {
  if (!Number.isFinite(secs) || secs < 0) return '–:––';
  const s = Math.floor(secs);
  const mm = String(Math.floor((s % 3600) / 60));
  const ss = String(s % 60).padStart(2, '0');
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm.padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

function stored(key, fallback) {
  try {
    return localStorage.getItem(key) ?? fallback;
  } catch {
    return fallback;
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // not remembered
  }
}

class Player {
  constructor() {
    this.queue = []; // tracks
    this.order = []; // indexes into queue, in play order (shuffled or not)
    this.pos = -1; // position in order
    this.shuffle = false;
    this.repeat = 'off'; // 'off' | 'all' | 'one'
    this.lyrics = null; // {synced, lines} of the current track
    this.lyricIndex = -1;
    this.listeners = new Set();
    this.lyricListeners = new Set(); // plugins follow the lines sung
    this.prefetch = null; // AbortController of the running prefetch
    this.playable = () => true; // the view says which tracks may play (bans)
    this.build();
  }

  build() {
    this.audio = h('audio', { id: 'player-audio', preload: 'auto' });
    const btn = (id, label, text, extra = {}) => h('button', { id, type: 'button', class: 'btn btn-quiet player-btn', 'aria-label': t(label), title: t(label), dataset: { label }, ...extra }, text);
    this.el = h('section', { id: 'player', class: 'player', hidden: true, 'aria-label': t('player.label') },
      h('div', { id: 'player-lyrics', class: 'player-lyrics', hidden: true },
        h('ol', { id: 'player-lyrics-lines', class: 'lyrics-lines' })),
      h('div', { class: 'player-bar' },
        h('div', { class: 'player-track' },
          h('div', { class: 'player-cover', id: 'player-cover-box' }),
          h('div', { class: 'player-text' },
            h('div', { id: 'player-title', class: 'player-title' }),
            h('div', { id: 'player-artist', class: 'player-artist muted' }))),
        h('div', { class: 'player-main' },
          h('div', { class: 'player-controls' },
            btn('player-shuffle', 'player.shuffle', '⤮', { 'aria-pressed': 'false' }),
            btn('player-prev', 'player.prev', h('span', { class: 'icon icon-prev', 'aria-hidden': 'true' })),
            btn('player-play', 'player.play', h('span', { class: 'icon icon-play', 'aria-hidden': 'true' })),
            btn('player-next', 'player.next', h('span', { class: 'icon icon-next', 'aria-hidden': 'true' })),
            btn('player-repeat', 'player.repeat.off', '↻', { 'data-mode': 'off' })),
          h('div', { class: 'player-seek' },
            h('span', { id: 'player-time', class: 'player-time' }, '0:00'),
            h('input', { id: 'player-seek', type: 'range', min: 0, max: 1000, value: 0, step: 1, 'aria-label': t('player.seek') }),
            h('span', { id: 'player-duration', class: 'player-time' }, '–:––'))),
        h('div', { class: 'player-side' },
          btn('player-lyrics-btn', 'player.lyrics', '♪', { 'aria-pressed': 'false' }),
          h('input', { id: 'player-volume', type: 'range', min: 0, max: 100, value: 100, 'aria-label': t('player.volume') }))),
      h('p', { id: 'player-status', class: 'player-status', role: 'status', hidden: true }),
      this.audio);
    document.body.append(this.el);
    const $ = (id) => this.el.querySelector(`#${id}`);
    this.$ = $;

    const vol = Number(stored(volumeKey, '1'));
    this.audio.volume = Number.isFinite(vol) ? Math.min(1, Math.max(0, vol)) : 1;
    $('player-volume').value = String(Math.round(this.audio.volume * 100));

    $('player-play').addEventListener('click', () => this.toggle());
    $('player-next').addEventListener('click', () => this.next(true));
    $('player-prev').addEventListener('click', () => this.prev());
    $('player-shuffle').addEventListener('click', () => this.setShuffle(!this.shuffle));
    $('player-repeat').addEventListener('click', () => {
      this.repeat = { off: 'all', all: 'one', one: 'off' }[this.repeat];
      this.renderButtons();
    });
    $('player-lyrics-btn').addEventListener('click', () => {
      const panel = $('player-lyrics');
      panel.hidden = !panel.hidden;
      $('player-lyrics-btn').setAttribute('aria-pressed', String(!panel.hidden));
      this.highlight(true);
    });
    const seek = $('player-seek');
    seek.addEventListener('input', () => {
      this.seeking = true;
      $('player-time').textContent = formatTime((seek.value / 1000) * this.duration());
    });
    seek.addEventListener('change', () => {
      this.seeking = false;
      const d = this.duration();
      if (d > 0) this.audio.currentTime = (seek.value / 1000) * d;
    });
    $('player-volume').addEventListener('input', (e) => {
      this.audio.volume = e.target.value / 100;
      store(volumeKey, String(this.audio.volume));
    });

    const a = this.audio;
    a.addEventListener('timeupdate', () => this.onTime());
    a.addEventListener('durationchange', () => this.onTime());
    a.addEventListener('play', () => this.renderButtons());
    a.addEventListener('pause', () => this.renderButtons());
    a.addEventListener('playing', () => {
      this.setStatus('');
      this.prefetchNext();
    });
    a.addEventListener('ended', () => this.next(false));
    a.addEventListener('error', () => this.onError());
    onLangChange(() => this.renderLang());
    this.mediaSession();
  }

  // ---- public API ----

  // play replaces the queue and plays queue[index]. The track already
  // playing, clicked again (a double click, or in a list sorted anew),
  // plays on from where it is: loading it again would restart it and
  // open a second stream of it.
  play(queue, index) {
    const was = this.current();
    this.queue = queue.slice();
    this.order = queue.map((_, i) => i);
    if (this.shuffle) this.shuffleOrder(index);
    this.pos = this.order.indexOf(index);
    const tr = this.current();
    if (was && tr && was.md5 === tr.md5 && this.loaded(tr)) {
      if (this.audio.paused) this.audio.play().catch(() => {});
      this.renderTrack();
      if (!this.audio.paused) this.prefetchNext();
      for (const fn of this.listeners) fn(tr);
      return;
    }
    this.load();
  }

  // loaded reports whether the audio element holds tr, still playable.
  loaded(tr) {
    return this.audio.getAttribute('src') === streamPath(tr.md5) && !this.audio.error && this.playable(tr);
  }

  // follow re-checks the current track whenever the library changes or
  // the event stream reconnects: a ban set while the Music view is not
  // shown (or in another tab) stops it, as the view's refresh does. A
  // stream already open would otherwise play on, and the media keys
  // could resume it.
  follow(events) {
    if (this.following) return;
    this.following = true;
    let timer = 0;
    const soon = () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.recheck(), 300);
    };
    events.on('music', (ev) => {
      if (ev.library) soon();
    });
    events.onStatus((st) => {
      if (st === 'open') soon();
    });
  }

  // recheck asks the node whether the current track may still play.
  async recheck() {
    const tr = this.current();
    if (!tr || !this.audio.getAttribute('src')) return;
    try {
      const res = await fetch(streamPath(tr.md5), { method: 'HEAD' });
      const cur = this.current();
      if (res.status === 403 && cur && cur.md5 === tr.md5) this.stopBanned();
    } catch {
      // the next change checks again
    }
  }

  // current is the playing track, or null.
  current() {
    return this.pos >= 0 ? this.queue[this.order[this.pos]] : null;
  }

  // onLyric calls fn(line, index) when the line being sung changes; it
  // returns an unsubscribe func.
  onLyric(fn) {
    this.lyricListeners.add(fn);
    return () => this.lyricListeners.delete(fn);
  }

  // onChange calls fn(track) when the current track changes; it returns
  // an unsubscribe func.
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  // refresh takes the library after a change: queued tracks get their
  // new fields (a cover attached, a cached copy removed). Tracks that
  // left stay queued; the current one plays on. A track that is now
  // banned stops at once.
  refresh(byID) {
    this.queue = this.queue.map((tr) => byID.get(tr.md5) || tr);
    const cur = this.current();
    if (cur && !this.playable(cur) && this.audio.getAttribute('src')) this.stopBanned();
    this.renderTrack();
  }

  // stopBanned stops the current track, now banned.
  stopBanned() {
    this.audio.pause();
    this.audio.removeAttribute('src');
    this.audio.load();
    this.setStatus(t('player.banned'));
  }

  // ---- playback ----

  duration() {
    const d = this.audio.duration;
    if (Number.isFinite(d) && d > 0) return d;
    const cur = this.current();
    return cur ? cur.duration : 0;
  }

  load() {
    const tr = this.current();
    if (!tr) return;
    if (!this.playable(tr)) {
      this.setStatus(t('player.banned'));
      return;
    }
    this.el.hidden = false;
    document.body.classList.add('has-player');
    this.setStatus('');
    this.audio.src = streamPath(tr.md5);
    this.el.dataset.playing = tr.md5;
    delete this.el.dataset.prefetched;
    if (this.prefetch) this.prefetch.abort();
    this.prefetch = null;
    this.audio.play().catch((err) => {
      // NotAllowedError: the browser wants a click first; AbortError: the
      // next load replaced this one.
      if (err.name === 'NotAllowedError') this.setStatus(t('player.clickToPlay'));
    });
    this.renderTrack();
    this.loadLyrics(tr);
    for (const fn of this.listeners) fn(tr);
  }

  toggle() {
    if (!this.current()) return;
    if (this.audio.paused) this.resume();
    else this.audio.pause();
  }

  // resume plays the current track on, or loads it again when it was
  // stopped (banned): an <audio> without a source would only pretend to
  // play, and the node says whether the track may play now.
  resume() {
    if (!this.current()) return;
    if (!this.audio.getAttribute('src')) this.load();
    else this.audio.play().catch(() => {});
  }

  // step returns the position after pos in direction dir (1 or -1),
  // skipping tracks that may not play, or -1 at the end of the queue.
  step(pos, dir) {
    const n = this.order.length;
    for (let i = 1; i <= n; i++) {
      let p = pos + dir * i;
      if (p < 0 || p >= n) {
        if (this.repeat !== 'all') return -1;
        p = ((p % n) + n) % n;
      }
      if (this.playable(this.queue[this.order[p]])) return p;
    }
    return -1;
  }

  // next goes to the next track; byUser is a click (repeat one does not
  // hold it) rather than the end of the track.
  next(byUser) {
    if (!byUser && this.repeat === 'one') {
      this.audio.currentTime = 0;
      this.audio.play().catch(() => {});
      return;
    }
    const p = this.step(this.pos, 1);
    if (p < 0) {
      if (!byUser) this.renderButtons();
      return;
    }
    this.pos = p;
    this.load();
  }

  prev() {
    if (this.audio.currentTime > 3) {
      this.audio.currentTime = 0;
      return;
    }
    const p = this.step(this.pos, -1);
    if (p < 0) {
      this.audio.currentTime = 0;
      return;
    }
    this.pos = p;
    this.load();
  }

  setShuffle(on) {
    this.shuffle = on;
    const cur = this.order[this.pos];
    if (on) this.shuffleOrder(cur);
    else this.order = this.queue.map((_, i) => i);
    this.pos = cur === undefined ? -1 : this.order.indexOf(cur);
    this.renderButtons();
    this.prefetchNext();
  }

  // shuffleOrder puts first at the front and the rest in random order.
  shuffleOrder(first) {
    const rest = this.queue.map((_, i) => i).filter((i) => i !== first);
    for (let i = rest.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [rest[i], rest[j]] = [rest[j], rest[i]];
    }
    this.order = first === undefined || first < 0 ? rest : [first, ...rest];
  }

  // prefetchNext fetches the start of the next track, so that it starts
  // at once: for a remote track that fetches its first pieces.
  prefetchNext() {
    const p = this.step(this.pos, 1);
    const next = p >= 0 ? this.queue[this.order[p]] : null;
    if (!next || next === this.current() || this.el.dataset.prefetched === next.md5) return;
    if (this.prefetch) this.prefetch.abort();
    const ctl = new AbortController();
    this.prefetch = ctl;
    this.el.dataset.prefetched = next.md5;
    // ahead=1: a download of it the user paused stays paused (409) until
    // it plays.
    fetch(`${streamPath(next.md5)}?ahead=1`, { headers: { Range: `bytes=0-${prefetchBytes - 1}` }, signal: ctl.signal })
      .then((res) => res.arrayBuffer())
      .catch(() => {}); // a failed prefetch only costs the head start
  }

  async onError() {
    const tr = this.current();
    if (!tr || !this.audio.getAttribute('src')) return;
    // The element does not say why; the API does.
    let msg = t('player.failed');
    try {
      const res = await fetch(streamPath(tr.md5), { headers: { Range: 'bytes=0-0' } });
      if (!res.ok) msg = t(res.status === 403 ? 'player.banned' : res.status === 404 ? 'player.gone' : 'player.failed');
    } catch {
      // keep the general message
    }
    if (this.current() === tr) this.setStatus(msg);
  }

  onTime() {
    const a = this.audio;
    const d = this.duration();
    if (!this.seeking) {
      this.$('player-time').textContent = formatTime(a.currentTime);
      this.$('player-seek').value = String(d > 0 ? Math.round((a.currentTime / d) * 1000) : 0);
    }
    this.$('player-duration').textContent = formatTime(d);
    this.highlight(false);
    if ('mediaSession' in navigator && navigator.mediaSession.setPositionState && d > 0) {
      try {
        navigator.mediaSession.setPositionState({ duration: d, position: Math.min(a.currentTime, d), playbackRate: a.playbackRate || 1 });
      } catch {
        // position past a duration not yet known
      }
    }
  }

  // ---- lyrics ----

  async loadLyrics(tr) {
    this.lyrics = null;
    this.lyricIndex = -1;
    this.renderLyrics();
    if (!tr.has_lyrics) return;
    try {
      const res = await fetch(lyricsPath(tr.md5), { headers: { Accept: 'application/json' } });
      if (!res.ok) return;
      const l = await res.json();
      if (this.current() !== tr) return;
      this.lyrics = l;
      this.renderLyrics();
    } catch {
      // no lyrics shown
    }
  }

  renderLyrics() {
    const list = this.$('player-lyrics-lines');
    const l = this.lyrics;
    list.classList.toggle('unsynced', !!l && !l.synced);
    if (!l || !l.lines.length) {
      list.replaceChildren(h('li', { class: 'lyrics-none muted' }, t('player.noLyrics')));
      return;
    }
    list.replaceChildren(...l.lines.map((line, i) => h('li', { dataset: { i: String(i), t: String(line.t) } }, line.text || '\u00a0')));
    this.highlight(true);
  }

  // highlight marks the line being sung and scrolls it to the middle.
  highlight(force) {
    const l = this.lyrics;
    if (!l || !l.synced || !l.lines.length) return;
    const now = this.audio.currentTime + 0.05;
    let lo = 0;
    let hi = l.lines.length - 1;
    let idx = -1;
    while (lo <= hi) { // last line with t <= now
      const mid = (lo + hi) >> 1;
      if (l.lines[mid].t <= now) {
        idx = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (idx === this.lyricIndex && !force) return;
    const list = this.$('player-lyrics-lines');
    const old = list.querySelector('.current');
    if (old) {
      old.classList.remove('current');
      old.removeAttribute('aria-current');
    }
    const moved = idx !== this.lyricIndex;
    this.lyricIndex = idx;
    this.el.dataset.lyric = String(idx);
    if (moved) for (const fn of this.lyricListeners) fn(l.lines[idx] || null, idx);
    const li = list.children[idx];
    if (!li) return;
    li.classList.add('current');
    li.setAttribute('aria-current', 'true');
    const panel = this.$('player-lyrics');
    if (!panel.hidden) {
      panel.scrollTo({ top: li.offsetTop - panel.clientHeight / 2 + li.offsetHeight / 2, behavior: force ? 'auto' : 'smooth' });
    }
  }

  // ---- rendering ----

  setStatus(msg) {
    const el = this.$('player-status');
    el.textContent = msg;
    el.hidden = !msg;
  }

  renderTrack() {
    const tr = this.current();
    if (!tr) return;
    this.$('player-title').textContent = tr.title || tr.name || '';
    this.$('player-artist').textContent = [tr.artist, tr.album].filter(Boolean).join(' — ');
    const box = this.$('player-cover-box');
    const src = tr.has_cover ? coverPath(tr.md5, true) : '';
    if ((box.dataset.src || '') !== src) {
      box.dataset.src = src;
      box.replaceChildren(src ? h('img', { src, alt: '' }) : h('span', { class: 'cover-none', 'aria-hidden': 'true' }, '♪'));
    }
    this.renderButtons();
    if ('mediaSession' in navigator && typeof MediaMetadata === 'function') {
      const artwork = tr.has_cover ? [{ src: new URL(coverPath(tr.md5, false), location.href).href }] : [];
      navigator.mediaSession.metadata = new MediaMetadata({
        title: tr.title || tr.name || '', artist: tr.artist || '', album: tr.album || '', artwork,
      });
    }
  }

  renderButtons() {
    const playing = !this.audio.paused;
    const play = this.$('player-play');
    play.firstChild.className = `icon ${playing ? 'icon-pause' : 'icon-play'}`;
    play.dataset.label = playing ? 'player.pause' : 'player.play';
    play.title = t(play.dataset.label);
    play.setAttribute('aria-label', play.title);
    this.$('player-shuffle').setAttribute('aria-pressed', String(this.shuffle));
    const rep = this.$('player-repeat');
    rep.dataset.mode = this.repeat;
    rep.textContent = this.repeat === 'one' ? '↻1' : '↻';
    rep.setAttribute('aria-pressed', String(this.repeat !== 'off'));
    rep.dataset.label = `player.repeat.${this.repeat}`;
    rep.title = t(rep.dataset.label);
    rep.setAttribute('aria-label', rep.title);
    if ('mediaSession' in navigator) navigator.mediaSession.playbackState = playing ? 'playing' : 'paused';
  }

  renderLang() {
    this.el.setAttribute('aria-label', t('player.label'));
    for (const b of this.el.querySelectorAll('[data-label]')) {
      b.title = t(b.dataset.label);
      b.setAttribute('aria-label', b.title);
    }
    this.$('player-seek').setAttribute('aria-label', t('player.seek'));
    this.$('player-volume').setAttribute('aria-label', t('player.volume'));
    if (!this.lyrics) this.renderLyrics();
  }

  // mediaSession wires media keys and the browser's controls.
  mediaSession() {
    if (!('mediaSession' in navigator)) return;
    const ms = navigator.mediaSession;
    const on = (action, fn) => {
      try {
        ms.setActionHandler(action, fn);
      } catch {
        // an action this browser does not know
      }
    };
    on('play', () => this.resume());
    on('pause', () => this.audio.pause());
    on('previoustrack', () => this.prev());
    on('nexttrack', () => this.next(true));
    on('seekbackward', (d) => { this.audio.currentTime = Math.max(0, this.audio.currentTime - (d.seekOffset || 10)); });
    on('seekforward', (d) => { this.audio.currentTime = Math.min(this.duration(), this.audio.currentTime + (d.seekOffset || 10)); });
    on('seekto', (d) => { this.audio.currentTime = d.seekTime; });
    on('stop', () => this.audio.pause());
  }
}

let instance = null;

// player returns the page's one player, making it on first use.
export function player() {
  if (!instance) instance = new Player();
  return instance;
}
