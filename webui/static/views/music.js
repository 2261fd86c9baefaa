// The music view: the library of every online node (GET
// /api/music/tracks), grouped by artist and album, searchable and
// sortable, with cover thumbnails and whether each track is here, cached
// or only on other nodes; a track's details, where a cover or lyrics can
// be attached and a cached copy removed; the ban list; scan progress.
// Clicking a track plays the list as it is shown, in the player
// (player.js), which lives outside the view and plays on when the user
// leaves it.
//
// The list is virtualised: a library of 20,000 tracks is one tall empty
// box with only the rows in sight (and a few around) in the DOM, so
// scrolling, searching and a library change stay smooth.
import { h, shortID, countRead, freshness } from '../dom.js';
import { t, plural } from '../i18n/index.js';
import { getJSON, sendJSON, failure, served } from '../api.js';
import { formatBytes } from '../format.js';
import { player, coverPath, formatTime } from '../player.js';

const trackPath = (id) => `api/music/tracks/${encodeURIComponent(id)}`;

// rowHeight is the height of every row, group headers included, in px
// (the CSS says the same); overscan rows are kept beyond each edge.
const rowHeight = 44;
const overscan = 8;

const collate = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' }).compare;
const byArtist = (a, b) => collate(a.artist, b.artist) || collate(a.album, b.album) ||
  (a.track || 1e9) - (b.track || 1e9) || collate(a.title, b.title) || (a.md5 < b.md5 ? -1 : 1);
// sorts are the orders the user can pick; "artist" groups by album.
const sorts = {
  artist: byArtist,
  title: (a, b) => collate(a.title, b.title) || byArtist(a, b),
  album: (a, b) => collate(a.album, b.album) || byArtist(a, b),
  duration: (a, b) => a.duration - b.duration || byArtist(a, b),
  year: (a, b) => a.year - b.year || byArtist(a, b),
  format: (a, b) => collate(a.format, b.format) || byArtist(a, b),
};

// where says where a track's bytes are: here, cached or only remote.
const where = (tr) => (tr.local ? 'local' : tr.cached ? 'cached' : 'remote');

export default {
  id: 'music',
  title: 'nav.music',

  // available says whether the node runs the music service: without it
  // /api/music/scan answers 404.
  available: () => served('api/music/scan'),

  mount(root, { events, onLang, toast }) {
    const pl = player();
    pl.follow(events);
    let library = null; // every track, banned ones too; null until loaded
    let tracks = null; // what may be shown: library without the banned unless showBanned
    let byID = new Map();
    let loadError = '';
    let showBanned = false;
    let bannedCount = 0;
    let query = '';
    let sort = 'artist';
    let desc = false;
    let rows = []; // what the list shows: {group} or {track}
    let shown = []; // the tracks shown, in order: the queue a click plays
    let names = new Map(); // node id → name
    let scan = null;
    let detail = null; // md5 of the track whose details are open
    let detailShown = ''; // the details' track as last drawn, as JSON
    let detailMsg = null; // {text, error} under the details; kept when they redraw
    let confirmRemove = null; // md5 whose "remove local copy" asks to confirm
    let alive = true;

    const search = h('input', { id: 'music-search', type: 'search', class: 'input', autocomplete: 'off' });
    const sortSel = h('select', { id: 'music-sort', class: 'input' });
    const dirBtn = h('button', { id: 'music-dir', type: 'button', class: 'btn', 'aria-pressed': 'false' });
    const bansBtn = h('button', { id: 'music-bans-btn', type: 'button', class: 'btn' });
    const bannedNote = h('p', { id: 'music-banned', class: 'music-banned muted', hidden: true });
    const bansText = h('textarea', { id: 'music-bans-text', class: 'input', rows: 5, spellcheck: 'false' });
    const bansError = h('p', { id: 'music-bans-error', class: 'form-error', role: 'alert' });
    const bansSave = h('button', { id: 'music-bans-save', type: 'button', class: 'btn btn-primary' });
    const bansCancel = h('button', { id: 'music-bans-cancel', type: 'button', class: 'btn' });
    const bansHint = h('p', { class: 'small muted' });
    const bansTitle = h('h2', { class: 'section-title' });
    const bans = h('div', { id: 'music-bans', class: 'card music-bans', hidden: true },
      bansTitle, bansHint, bansText, bansError, h('div', { class: 'form-actions' }, bansSave, bansCancel));
    const scanBox = h('div', { id: 'music-scan', class: 'music-scan', hidden: true });
    // What Subsonic apps said they play (scrobble, submission=false).
    const nowBox = h('div', { id: 'music-nowplaying', class: 'card music-nowplaying', hidden: true });
    let nowPlaying = [];
    const spacer = h('div', { class: 'music-spacer' });
    const list = h('div', { id: 'music-list', class: 'music-list card', tabindex: '0', role: 'list' }, spacer);
    const empty = h('div', { id: 'music-empty', class: 'empty', hidden: true });
    const detailBox = h('aside', { id: 'music-detail', class: 'card music-detail', hidden: true });
    const title = h('h1', { id: 'music-title' });
    const count = h('span', { id: 'music-count', class: 'count' });
    const sortLabel = h('span', { class: 'small muted' });

    root.append(h('section', { class: 'music' },
      h('div', { class: 'view-head' }, title, count),
      scanBox, nowBox,
      h('div', { class: 'music-tools' }, search, h('label', { class: 'music-sort' }, sortLabel, sortSel), dirBtn, bansBtn),
      bans, bannedNote, detailBox, list, empty));

    function renderStatic() {
      title.textContent = t('music.title');
      search.placeholder = t('music.search');
      search.setAttribute('aria-label', t('music.search'));
      sortLabel.textContent = t('music.sort');
      sortSel.replaceChildren(...Object.keys(sorts).map((k) => h('option', { value: k, selected: k === sort }, t(`music.sort.${k}`))));
      dirBtn.textContent = desc ? '↓' : '↑';
      dirBtn.title = t(desc ? 'music.desc' : 'music.asc');
      dirBtn.setAttribute('aria-label', dirBtn.title);
      bansBtn.textContent = t('music.bans');
      bansTitle.textContent = t('music.bans.title');
      bansHint.textContent = t('music.bans.hint');
      bansSave.textContent = t('music.bans.save');
      bansCancel.textContent = t('music.bans.cancel');
    }

    // ---- loading ----

    let loading = null;
    let again = false;
    // load reads the library; calls while one is under way make one more.
    async function load() {
      if (loading) {
        again = true;
        return loading;
      }
      loading = (async () => {
        do {
          again = false;
          try {
            // Banned tracks come too, so that the view can say how many
            // are folded away and show them on demand.
            const all = await getJSON('api/music/tracks?banned=1');
            if (!alive) return;
            for (const tr of all) {
              tr.search = `${tr.title}\n${tr.artist}\n${tr.album}\n${tr.name}`.toLowerCase();
            }
            library = all;
            byID = new Map(all.map((tr) => [tr.md5, tr]));
            loadError = '';
          } catch (err) {
            loadError = err.message;
          }
          if (!alive) return;
          pl.refresh(byID);
          rebuild();
          // Only a change redraws the details: a redraw between the
          // mousedown and mouseup of a click would swallow the click,
          // and a scan changes the library several times a second.
          if (detail && JSON.stringify(byID.get(detail)) !== detailShown) renderDetail();
        } while (again);
      })();
      try {
        await loading;
      } finally {
        loading = null;
      }
    }

    // A GET of the scan answered before an event but read after it is
    // older (a scan that finished would show as running until the next
    // scan); so is one begun before another whose answer came first.
    const scanFresh = freshness();
    async function loadScan() {
      const ticket = scanFresh.begin();
      try {
        const st = await getJSON('api/music/scan');
        if (!ticket.fresh()) return;
        scan = st;
        renderScan();
      } catch {
        // the next event tries again
      } finally {
        countRead(root, 'readScan');
      }
    }

    // ---- the list ----

    // rebuild filters and sorts the library into rows and redraws.
    function rebuild() {
      tracks = library && (showBanned ? library : library.filter((tr) => !tr.banned));
      bannedCount = library ? library.length - library.filter((tr) => !tr.banned).length : 0;
      if (!tracks) {
        count.textContent = '';
        empty.hidden = false;
        empty.replaceChildren(h('p', { class: loadError ? 'form-error' : 'muted' }, loadError ? t('music.error', { msg: loadError }) : t('music.loading')));
        list.hidden = true;
        return;
      }
      const terms = query.toLowerCase().split(/\s+/).filter(Boolean);
      let sel = terms.length ? tracks.filter((tr) => terms.every((w) => tr.search.includes(w))) : tracks.slice();
      sel.sort(sorts[sort]);
      if (desc) sel.reverse();
      shown = sel;
      rows = [];
      if (sort === 'artist') {
        let g = null;
        for (const tr of sel) {
          const k = `${tr.artist}\u0000${tr.album}`;
          if (!g || k !== g.key) {
            g = { key: k, artist: tr.artist, album: tr.album, cover: null, n: 0 };
            rows.push({ group: g });
          }
          g.n++;
          if (!g.cover && tr.has_cover) g.cover = tr.md5;
          rows.push({ track: tr });
        }
      } else rows = sel.map((tr) => ({ track: tr }));

      count.textContent = terms.length
        ? t('music.matches', { n: sel.length.toLocaleString(), total: tracks.length.toLocaleString() })
        : plural('music.count', tracks.length).replace(String(tracks.length), tracks.length.toLocaleString());
      bannedNote.hidden = bannedCount === 0;
      bannedNote.replaceChildren(
        showBanned ? t('music.banned.shown', { n: bannedCount }) : plural('music.banned.hidden', bannedCount), ' ',
        h('button', { type: 'button', class: 'btn btn-small', id: 'music-banned-toggle' }, t(showBanned ? 'music.banned.hide' : 'music.banned.show')));
      empty.hidden = rows.length > 0;
      list.hidden = rows.length === 0;
      if (!rows.length) {
        empty.replaceChildren(h('div', { class: 'empty-icon', 'aria-hidden': 'true' }, '♪'),
          h('p', {}, t(tracks.length ? 'music.noMatch' : 'music.empty')));
      }
      spacer.style.height = `${rows.length * rowHeight}px`;
      draw();
    }

    // drawn are the rows in the DOM; draw keeps a row's element while
    // what it shows is the same (rowKey), so that a library change does
    // not replace the row under the pointer and swallow a click on it.
    const drawn = new Map(); // row index → element
    let langGen = 0; // moves with the language: every row is drawn anew
    function rowKey(row) {
      return row.group
        ? `g${langGen}\u0000${row.group.key}\u0000${row.group.n}\u0000${row.group.cover}`
        : `t${langGen}\u0000${sort === 'artist'}\u0000${JSON.stringify(row.track)}\u0000${sourcesText(row.track)}`;
    }
    let drawPending = false;
    function scheduleDraw() {
      if (drawPending) return;
      drawPending = true;
      requestAnimationFrame(() => {
        drawPending = false;
        if (alive) draw();
      });
    }

    // draw puts the rows in sight into the DOM and takes the others out.
    function draw() {
      const top = list.scrollTop;
      const height = list.clientHeight || 600;
      const from = Math.max(0, Math.floor(top / rowHeight) - overscan);
      const to = Math.min(rows.length, Math.ceil((top + height) / rowHeight) + overscan);
      for (const [i, el] of drawn) {
        if (i < from || i >= to || el.rowKey !== rowKey(rows[i])) {
          el.remove();
          drawn.delete(i);
        }
      }
      const cur = pl.current();
      for (let i = from; i < to; i++) {
        let el = drawn.get(i);
        if (!el) {
          el = rowElement(rows[i]);
          el.rowKey = rowKey(rows[i]);
          el.style.top = `${i * rowHeight}px`;
          drawn.set(i, el);
          spacer.append(el);
        }
        if (rows[i].track) markPlaying(el, cur && rows[i].track.md5 === cur.md5);
      }
    }

    function markPlaying(el, on) {
      el.classList.toggle('playing', !!on);
      if (on) el.setAttribute('aria-current', 'true');
      else el.removeAttribute('aria-current');
    }

    function rowElement(row) {
      if (row.group) {
        const g = row.group;
        return h('div', { class: 'music-row music-group', role: 'listitem', dataset: { group: g.key } },
          h('div', { class: 'music-cover' }, g.cover
            ? h('img', { src: coverPath(g.cover, true), alt: '', loading: 'lazy', decoding: 'async' })
            : h('span', { class: 'cover-none', 'aria-hidden': 'true' }, '♪')),
          h('div', { class: 'music-group-text' },
            h('span', { class: 'music-artist' }, g.artist || t('music.unknownArtist')),
            h('span', { class: 'muted' }, ' — ', g.album || t('music.unknownAlbum'))),
          h('span', { class: 'small muted' }, plural('music.tracks', g.n)));
      }
      const tr = row.track;
      const w = where(tr);
      return h('div', {
        class: `music-row music-track${tr.banned ? ' banned' : ''}`, role: 'listitem', tabindex: '-1',
        dataset: { id: tr.md5, where: w },
      },
      h('span', { class: 'music-no muted' }, tr.track ? String(tr.track) : ''),
      h('div', { class: 'music-main' },
        h('span', { class: 'music-name' }, tr.title || tr.name),
        sort === 'artist' ? null : h('span', { class: 'music-by small muted' }, [tr.artist, tr.album].filter(Boolean).join(' — '))),
      h('span', { class: 'music-dur muted' }, formatTime(tr.duration)),
      h('span', { class: 'badge music-format' }, (tr.format || '').toUpperCase()),
      tr.banned ? h('span', { class: 'badge badge-banned' }, t('music.banned')) : h('span', { class: `badge badge-${w}`, title: sourcesText(tr) }, t(`music.where.${w}`)),
      h('button', { type: 'button', class: 'btn btn-quiet btn-small', dataset: { act: 'detail', id: tr.md5 }, 'aria-label': t('music.details'), title: t('music.details') }, '⋯'));
    }

    function sourcesText(tr) {
      return tr.sources.map((id) => names.get(id) || shortID(id)).join(', ');
    }

    // playFrom plays the list as shown, from track md5.
    function playFrom(md5) {
      const tr = byID.get(md5);
      if (!tr) return;
      if (tr.banned) {
        toast(t('player.banned'));
        return;
      }
      const queue = shown.filter((x) => !x.banned);
      pl.play(queue, queue.indexOf(tr));
    }

    list.addEventListener('scroll', scheduleDraw, { passive: true });
    const resize = new ResizeObserver(scheduleDraw);
    resize.observe(list);
    list.addEventListener('click', (e) => {
      const btn = e.target.closest('button[data-act="detail"]');
      if (btn) {
        openDetail(btn.dataset.id);
        return;
      }
      const row = e.target.closest('.music-track');
      if (row) playFrom(row.dataset.id);
      const group = e.target.closest('.music-group');
      if (group) {
        const first = shown.find((tr) => `${tr.artist}\u0000${tr.album}` === group.dataset.group && !tr.banned);
        if (first) playFrom(first.md5);
      }
    });
    list.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter') return;
      const row = e.target.closest('.music-track');
      if (row) playFrom(row.dataset.id);
    });
    bannedNote.addEventListener('click', (e) => {
      if (!e.target.closest('#music-banned-toggle')) return;
      showBanned = !showBanned;
      rebuild();
    });

    let searchTimer = 0;
    search.addEventListener('input', () => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => {
        query = search.value;
        list.scrollTop = 0;
        rebuild();
      }, 80);
    });
    sortSel.addEventListener('change', () => {
      sort = sortSel.value;
      rebuild();
    });
    dirBtn.addEventListener('click', () => {
      desc = !desc;
      dirBtn.setAttribute('aria-pressed', String(desc));
      renderStatic();
      rebuild();
    });

    // ---- the ban list ----

    bansBtn.addEventListener('click', async () => {
      if (!bans.hidden) {
        bans.hidden = true;
        return;
      }
      bansError.textContent = '';
      try {
        const b = await getJSON('api/music/bans');
        bansText.value = b.patterns.join('\n');
        bans.hidden = false;
        bansText.focus();
      } catch (err) {
        toast(t('music.error', { msg: err.message }));
      }
    });
    bansCancel.addEventListener('click', () => { bans.hidden = true; });
    bansSave.addEventListener('click', async () => {
      const patterns = bansText.value.split('\n').map((s) => s.trim()).filter(Boolean);
      bansSave.disabled = true;
      try {
        await sendJSON('PUT', 'api/music/bans', { patterns });
        bans.hidden = true;
        bansError.textContent = '';
        toast(t('music.bans.saved'));
        load();
      } catch (err) {
        bansError.textContent = t('music.bans.bad', { msg: err.message });
      } finally {
        bansSave.disabled = false;
      }
    });

    // ---- a track's details ----

    function openDetail(md5) {
      detail = md5;
      detailMsg = null;
      renderDetail();
      detailBox.scrollIntoView({ block: 'nearest' });
    }

    function renderDetail() {
      const tr = detail && byID.get(detail);
      detailBox.hidden = !tr;
      detailShown = JSON.stringify(tr);
      if (!tr) {
        detail = null;
        return;
      }
      const row = (k, v) => [h('dt', {}, t(k)), h('dd', {}, v)];
      const coverInput = h('input', { id: 'music-cover-file', type: 'file', accept: 'image/jpeg,image/png,image/gif,image/webp', class: 'sr-only' });
      const lyricsInput = h('input', { id: 'music-lyrics-file', type: 'file', accept: '.lrc,.txt,text/plain', class: 'sr-only' });
      const status = h('p', { id: 'music-detail-status', class: `small${detailMsg && detailMsg.error ? ' form-error' : ''}`, role: 'status' },
        detailMsg ? detailMsg.text : '');
      const say = (text, error) => {
        detailMsg = { text, error };
        status.textContent = text;
        status.classList.toggle('form-error', error);
      };
      coverInput.addEventListener('change', () => attach(tr, 'cover', coverInput.files[0], say));
      lyricsInput.addEventListener('change', () => attach(tr, 'lyrics', lyricsInput.files[0], say));
      const actions = [
        tr.banned ? null : h('button', { type: 'button', class: 'btn btn-primary', id: 'music-detail-play' }, t('music.play')),
        h('label', { class: 'btn', for: 'music-cover-file' }, t('music.attachCover')), coverInput,
        h('label', { class: 'btn', for: 'music-lyrics-file' }, t('music.attachLyrics')), lyricsInput,
        // Only a copy the player fetched is the music cache's to remove;
        // one the user downloaded in the Files view is removed there.
        tr.cache_removable ? h('button', { type: 'button', class: 'btn', id: 'music-remove-cache' },
          t(confirmRemove === tr.md5 ? 'music.removeCache.confirm' : 'music.removeCache')) : null,
        h('button', { type: 'button', class: 'btn btn-quiet', id: 'music-detail-close' }, t('music.close')),
      ];
      detailBox.dataset.id = tr.md5;
      detailBox.replaceChildren(
        h('div', { class: 'music-detail-head' },
          tr.has_cover ? h('img', { class: 'music-detail-cover', src: `${coverPath(tr.md5, false)}`, alt: t('music.cover') }) : null,
          h('div', {},
            h('h2', { class: 'section-title', id: 'music-detail-title' }, tr.title || tr.name),
            h('p', { class: 'muted' }, [tr.artist, tr.album, tr.year || null].filter(Boolean).join(' — ')))),
        h('dl', { class: 'detail-list' },
          row('music.col.duration', formatTime(tr.duration)),
          row('music.col.format', `${(tr.format || '').toUpperCase()} · ${tr.bitrate ? `${Math.round(tr.bitrate / 1000)} kbit/s · ` : ''}${tr.sample_rate ? `${tr.sample_rate} Hz` : ''}`),
          row('music.col.size', formatBytes(tr.size)),
          row('music.col.file', tr.name || '—'),
          row('music.col.where', t(`music.where.${where(tr)}`)),
          row('music.col.sources', sourcesText(tr) || '—'),
          row('music.col.md5', h('code', {}, tr.md5))),
        h('div', { class: 'form-actions music-detail-actions' }, actions),
        status);
      const play = detailBox.querySelector('#music-detail-play');
      if (play) play.addEventListener('click', () => playFrom(tr.md5));
      detailBox.querySelector('#music-detail-close').addEventListener('click', () => {
        detail = null;
        detailBox.hidden = true;
      });
      const rm = detailBox.querySelector('#music-remove-cache');
      if (rm) {
        rm.addEventListener('click', async () => {
          if (confirmRemove !== tr.md5) {
            confirmRemove = tr.md5;
            rm.textContent = t('music.removeCache.confirm');
            return;
          }
          confirmRemove = null;
          try {
            await sendJSON('DELETE', `${trackPath(tr.md5)}/cache`);
            toast(t('music.removeCache.done'));
            load();
          } catch (err) {
            say(t('music.error', { msg: err.message }), true);
          }
        });
      }
    }

    async function attach(tr, what, file, say) {
      if (!file) return;
      say(t('music.uploading'), false);
      try {
        let res;
        if (what === 'cover') {
          res = await fetch(`${trackPath(tr.md5)}/cover`, { method: 'PUT', body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' } });
        } else {
          res = await fetch(`${trackPath(tr.md5)}/lyrics`, { method: 'PUT', body: JSON.stringify({ raw: await file.text() }), headers: { 'Content-Type': 'application/json' } });
        }
        if (!res.ok) throw await failure(res);
        say(t(what === 'cover' ? 'music.coverAttached' : 'music.lyricsAttached'), false);
        load();
      } catch (err) {
        say(t('music.error', { msg: err.message }), true);
      }
    }

    // ---- scan progress ----

    function renderScan() {
      const st = scan;
      const busy = st && st.state === 'scanning';
      const errs = st ? st.errors || [] : [];
      scanBox.hidden = !busy && !errs.length;
      if (scanBox.hidden) return;
      const pct = st.files > 0 ? Math.round((st.done / st.files) * 100) : 0;
      scanBox.dataset.state = st.state;
      scanBox.replaceChildren(
        busy ? h('div', { class: 'music-scan-line' },
          h('span', { id: 'music-scan-text' }, t('music.scan.progress', { done: st.done.toLocaleString(), files: st.files.toLocaleString(), bytes: formatBytes(st.bytes) })),
          h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct },
            h('div', { class: 'progress-fill', style: `width: ${pct}%` }))) : null,
        errs.length ? h('details', { class: 'music-scan-errors' },
          h('summary', {}, plural('music.scan.errors', errs.length)),
          h('ul', {}, errs.slice(0, 200).map((e) => h('li', {}, h('code', {}, e.path), ': ', e.reason)))) : null);
    }

    // ---- now playing in Subsonic apps ----

    // renderNow shows the entries whose song is not over (and a minute).
    function renderNow() {
      const now = Date.now();
      const live = nowPlaying.filter((n) => now - Date.parse(n.since) < ((n.duration > 0 ? n.duration : 3540) + 60) * 1000);
      nowBox.hidden = live.length === 0;
      nowBox.replaceChildren(h('h2', { class: 'section-title' }, t('music.nowPlaying')),
        h('ul', {}, live.map((n) => h('li', { class: 'music-nowplaying-item' },
          h('strong', {}, n.title), ' — ', n.artist, ' ',
          h('span', { class: 'muted small' }, t('music.nowPlaying.by', { player: n.player || '?', user: n.user }))))));
    }
    // A GET answered before an event but read after it would put back the
    // older list.
    const nowFresh = freshness();
    async function loadNow() {
      const ticket = nowFresh.begin();
      let l;
      try {
        l = await getJSON('api/subsonic/nowplaying');
      } catch {
        l = []; // no Subsonic API on this node
      }
      if (ticket.fresh()) nowPlaying = l;
      nowBox.dataset.loads = String(Number(nowBox.dataset.loads || 0) + 1);
      if (alive) renderNow();
    }
    const nowTimer = setInterval(renderNow, 30000);
    const offNow = events.on('nowplaying', (l) => {
      if (Array.isArray(l)) {
        nowFresh.touch();
        nowPlaying = l;
        renderNow();
      } else {
        loadNow(); // events were lost
      }
    });

    // ---- events ----

    const offChange = pl.onChange(() => draw());
    pl.playable = (tr) => {
      const cur = byID.get(tr.md5);
      return !(cur ? cur.banned : tr.banned);
    };
    let libraryTimer = 0;
    const offMusic = events.on('music', (ev) => {
      if (ev.scan) {
        scanFresh.touch();
        scan = ev.scan;
        renderScan();
      }
      if (ev.library) {
        // A scan changes the library file by file: read it at most a
        // few times a second.
        clearTimeout(libraryTimer);
        libraryTimer = setTimeout(() => {
          load();
          if (!scan || scan.state === 'scanning') loadScan();
        }, 150);
      }
    });
    const offDir = events.on('directory', (dir) => {
      names = new Map(dir.map((n) => [n.id, n.name]));
    });
    const offStatus = events.onStatus((st) => {
      if (st === 'open') {
        load();
        loadScan();
      }
    });
    const offLang = onLang(() => {
      langGen++;
      renderStatic();
      rebuild();
      renderScan();
      renderNow();
      if (detail) renderDetail();
    });

    renderStatic();
    rebuild();
    load();
    loadScan();
    loadNow();

    return () => {
      alive = false;
      clearInterval(nowTimer);
      offNow();
      clearTimeout(searchTimer);
      clearTimeout(libraryTimer);
      resize.disconnect();
      offChange();
      offMusic();
      offDir();
      offStatus();
      offLang();
    };
  },
};
