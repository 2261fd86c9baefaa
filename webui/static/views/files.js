// The files view: what every online node shares (a gallery of the images
// and a table of all files, with search and sort), this node's transfers
// with their progress, and forms to share a file by path, fetch one by
// link, and push one of this node's files to a group ("Push to…" on its
// row: a dialog to pick nodes from the directory or a chat channel, and a
// plan; then a panel with each receiver's progress). Data comes from
// /api/files and /api/shards; "shards" events keep the transfers and
// pushes live (a push is also polled, for a node that sends no push
// events), and the file list is fetched again when they say it changed or
// the directory does.
//
// Transfer rows, table rows, gallery tiles and push panels are kept by id
// and updated in place (a cell only when its text changes, a node moved
// only when out of place), so that progress a few times a second neither
// reloads thumbnails nor eats a click: a button replaced, or taken out and
// put back, between its mousedown and mouseup gets no click.
import { h, shortID, countRead, freshness } from '../dom.js';
import { t, plural } from '../i18n/index.js';
import { getJSON, sendJSON } from '../api.js';
import { formatBytes, formatRate, formatETA } from '../format.js';

const contentPath = (id) => `api/shards/${encodeURIComponent(id)}/content`;
const shardPath = (id) => `api/shards/${encodeURIComponent(id)}`;

// The lists show this many at first, and a button for more: a mesh can
// share 100,000 files, and a DOM of them all would stall the page on
// every update.
const pageRows = 500;
const pageTiles = 120;
const pageTransfers = 200;
// maxPage is the most GET /api/shards gives at once.
const maxPage = 1000;

// getPage reads a page of a paged list: its entries and X-Total-Count.
async function getPage(path) {
  const res = await fetch(path, { headers: { Accept: 'application/json' } });
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try {
      msg = (await res.json()).error || msg;
    } catch {
      // not JSON: keep the status line
    }
    throw new Error(msg);
  }
  const list = await res.json();
  const count = Number(res.headers.get('X-Total-Count'));
  return { list, count: Number.isFinite(count) ? count : list.length };
}
// thumbMax is the largest image the gallery loads as a thumbnail on its
// own: opening a remote file fetches it, and a 1 GiB image should not be
// fetched because it scrolled into view. Bigger ones load when opened.
const thumbMax = 16 << 20;

const imageExt = /\.(png|jpe?g|gif|webp|avif|bmp|svg)$/i;
const isImage = (f) => (f.type ? f.type.startsWith('image/') : imageExt.test(f.name));

// setText and setAttr change an element only when the value differs: an
// unchanged cell is left alone.
function setText(el, s) {
  if (el.textContent !== s) el.textContent = s;
}
function setAttr(el, k, v) {
  if (el.getAttribute(k) !== v) el.setAttribute(k, v);
}

// syncChildren makes els parent's children, in order, removing the others
// and moving only the nodes out of place (a moved node is taken out and
// put back, which loses a click under way on it). A node that goes further
// down is passed over and put in its place when reached: moved before its
// neighbour instead, every node between would move up one by one.
function syncChildren(parent, els) {
  const at = new Map(els.map((el, i) => [el, i]));
  for (const c of [...parent.childNodes]) {
    if (!at.has(c)) c.remove();
  }
  let cur = parent.firstChild;
  els.forEach((el, i) => {
    while (cur && cur !== el && at.get(cur) > i && cur.nextSibling === el) cur = cur.nextSibling;
    if (el === cur) cur = cur.nextSibling;
    else parent.insertBefore(el, cur);
  });
}

// A push's status only moves forward on the node: a receiver's bytes grow,
// its state leaves "receiving" for good and "gone" never (a receiver done
// can still be dropped: its calls fail, it relays corrupt pieces), the
// bytes sent grow, the push ends once. So of two statuses of a push, one behind the other in any of these
// is the older, however it came (a poll answered before an event and read
// after it, an event queued behind a poll's answer): it is not shown, and a
// receiver shown done never goes back to part-way.
function pushBehind(a, b) {
  if (b.done && !a.done) return true;
  if ((a.uploaded || 0) < (b.uploaded || 0)) return true;
  const was = new Map((b.receivers || []).map((r) => [r.node, r]));
  for (const r of a.receivers || []) {
    const w = was.get(r.node);
    if (!w) continue;
    if ((r.have || 0) < (w.have || 0)) return true;
    if (r.state === 'receiving' && w.state !== 'receiving') return true;
    if (w.state === 'gone' && r.state !== 'gone') return true;
  }
  return false;
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

// kind is a short label for a MIME type.
function kind(type) {
  if (!type) return '';
  const [major, minor = ''] = type.split(';')[0].split('/');
  if (['image', 'audio', 'video', 'text'].includes(major)) return t(`files.kind.${major}`);
  return minor.replace(/^x-/, '') || major;
}

// peerColor is a stable colour for a node, for the contribution bar.
function peerColor(id) {
  let n = 0;
  for (const c of id) n = (n * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${n % 360} 65% 52%)`;
}

// A collator compares many times faster than localeCompare, which
// matters when 100,000 names are sorted.
const byName = new Intl.Collator().compare;
const sorts = {
  name: (a, b) => byName(a.name, b.name),
  size: (a, b) => b.size - a.size,
  type: (a, b) => byName(a.type || '', b.type || '') || byName(a.name, b.name),
  holders: (a, b) => b.holders.length - a.holders.length || byName(a.name, b.name),
};

export default {
  id: 'files',
  title: 'nav.files',

  // available says whether the node shares files: without the service
  // /api/files answers 404.
  async available() {
    const res = await fetch('api/files', { headers: { Accept: 'application/json' } });
    return res.status !== 404;
  },

  mount(root, { events, onLang, toast }) {
    let files = null; // null until loaded
    let filesError = '';
    const transfers = new Map(); // id → transfer
    let dir = []; // the directory: [{id, name, self}]
    let dirByID = new Map();
    let dirIDs = null; // the online node ids, as a key; null until known
    let dirNames = '';
    let rowLimit = pageRows;
    let tileLimit = pageTiles;
    let transferLimit = pageTransfers;
    let transfersTotal = 0; // this node's shares and transfers in all
    let query = '';
    let sortBy = 'name';
    const pushes = new Map(); // push id → status
    const pushRows = new Map(); // push id → {li, refs, recv: node id → {li, refs}}
    const polling = new Set(); // push ids pollPush follows
    let viewing = null; // the id shown in the viewer
    // A GET answered before an event but read after it is older than what
    // the event said, and of two reads on their way the one begun last
    // wins (dom.js freshness). The transfers are touched one by one: an
    // event for a transfer (a removal too) keeps what it said from an
    // answer that was on its way, and the rest of the answer is kept.
    const filesFresh = freshness();
    const transfersFresh = freshness();
    const dirFresh = freshness();
    const read = (what) => countRead(root, what);

    // ---- skeleton ----

    const title = h('h1', { id: 'files-title' });
    const count = h('span', { class: 'count', id: 'files-count' });
    const sharePath = h('input', { id: 'files-share-path', type: 'text', autocomplete: 'off', spellcheck: 'false' });
    const shareBtn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'files-share-btn' });
    const shareLabel = h('label', { for: 'files-share-path', class: 'form-label' });
    const shareError = h('p', { class: 'form-error', id: 'files-share-error', role: 'alert' });
    const shareForm = h('form', { class: 'files-form', id: 'files-share' }, shareLabel,
      h('div', { class: 'form-row' }, sharePath, shareBtn), shareError);
    const linkInput = h('input', { id: 'files-link', type: 'text', autocomplete: 'off', spellcheck: 'false' });
    const linkBtn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'files-link-btn' });
    const linkLabel = h('label', { for: 'files-link', class: 'form-label' });
    const linkError = h('p', { class: 'form-error', id: 'files-link-error', role: 'alert' });
    const linkForm = h('form', { class: 'files-form', id: 'files-fetch' }, linkLabel,
      h('div', { class: 'form-row' }, linkInput, linkBtn), linkError);

    const transfersTitle = h('h2', { class: 'section-title' });
    const transferList = h('ul', { class: 'transfers', id: 'files-transfers' });
    const transfersMore = h('div', { id: 'files-transfers-more' });
    const transfersEmpty = h('p', { class: 'muted', id: 'files-transfers-empty' });
    const rows = new Map(); // id → {li, refs}

    const pushTitle = h('h2', { class: 'section-title' });
    const pushEmpty = h('p', { class: 'muted', id: 'files-push-none' });
    const pushStatus = h('ul', { class: 'push-list', id: 'files-push-status' });
    const pushDialog = h('dialog', { id: 'files-push-dialog', class: 'dialog push-dialog' });
    let pushing = null; // the transfer the dialog pushes
    let channels = null; // this node's chat channels, null until read; [] without chat

    const galleryTitle = h('h2', { class: 'section-title' });
    const gallery = h('div', { class: 'gallery', id: 'files-gallery' });
    const tiles = new Map(); // id → figure
    const moreLines = new Map(); // list → {key, el}: its "more" line

    const allTitle = h('h2', { class: 'section-title' });
    const search = h('input', { id: 'files-search', type: 'search', autocomplete: 'off' });
    const sortSel = h('select', { id: 'files-sort' });
    const table = h('div', { id: 'files-all' });
    // The table is made once; its rows are kept by id (fileRows) while
    // shown, and the message in its place (loading, empty, no match)
    // redrawn only when it changes.
    const fileHeads = ['name', 'size', 'type', 'holders', 'actions'].map((c) => h('th', { scope: 'col', class: c === 'size' || c === 'holders' ? 'num' : null }));
    const fileBody = h('tbody');
    const fileTable = h('table', { class: 'table', id: 'files-table' }, h('thead', {}, h('tr', {}, fileHeads)), fileBody);
    const fileCard = h('div', { class: 'card' }, fileTable);
    const fileRows = new Map(); // id → {tr, cells, action, actionFor}
    let tableShows = ''; // what the table div shows: "table" or the message

    const viewerImg = h('img', { id: 'files-viewer-img', alt: '' });
    const viewerName = h('p', { class: 'viewer-name', id: 'files-viewer-name' });
    const viewerClose = h('button', { type: 'button', class: 'btn viewer-close', id: 'files-viewer-close' }, '✕');
    const viewerPrev = h('button', { type: 'button', class: 'btn viewer-nav', id: 'files-viewer-prev' }, '‹');
    const viewerNext = h('button', { type: 'button', class: 'btn viewer-nav', id: 'files-viewer-next' }, '›');
    const viewer = h('div', { class: 'viewer', id: 'files-viewer', role: 'dialog', 'aria-modal': 'true', hidden: true },
      viewerClose, viewerPrev, h('figure', {}, viewerImg, viewerName), viewerNext);

    root.replaceChildren(
      h('div', { class: 'view-head' }, title, count),
      h('div', { class: 'card files-forms' }, shareForm, linkForm),
      transfersTitle, transfersEmpty, transferList, transfersMore,
      galleryTitle, gallery,
      allTitle,
      h('div', { class: 'files-tools' }, search, sortSel),
      table,
      pushTitle, pushEmpty, pushStatus,
      viewer, pushDialog);

    // ---- names ----

    const nameOf = (id) => {
      const r = dirByID.get(id);
      return r ? (r.self ? t('files.you') : r.name || shortID(id)) : shortID(id);
    };

    // more is the line under a list cut at its limit: how many are shown,
    // and a button for the next page.
    function more(what, shown, total, page) {
      if (shown >= total) return null;
      return h('p', { class: 'muted small list-more', dataset: { more: what } },
        `${t('files.showing', { shown, total })} `,
        h('button', { type: 'button', class: 'btn btn-small', dataset: { act: 'more', id: what } },
          t('files.more', { n: Math.min(page, total - shown) })));
    }
    // moreLine is more() for list what, kept while what it says is the
    // same, so its button is not replaced under a click.
    function moreLine(what, shown, total, page) {
      if (shown >= total) {
        moreLines.delete(what);
        return null;
      }
      const key = `${shown}|${total}|${t('files.more', { n: 0 })}`;
      const had = moreLines.get(what);
      if (had && had.key === key) return had.el;
      const el = more(what, shown, total, page);
      moreLines.set(what, { key, el });
      return el;
    }
    const selfID = () => (dir.find((d) => d.self) || {}).id;

    // ---- data ----

    // loadFiles reads the file list: an event starts a new read while one
    // is on its way, and the older answer may come last.
    async function loadFiles() {
      const ticket = filesFresh.begin();
      let got;
      let error = '';
      try {
        got = await getJSON('api/files');
      } catch (err) {
        error = err.message;
      }
      read('readFiles');
      if (!ticket.fresh()) return;
      if (error) filesError = error;
      else {
        files = got;
        filesError = '';
      }
      renderFiles();
    }

    // loadTransfers reads as many transfers as the list shows, newest
    // first, a page at a time (a node can share 100,000 files: the whole
    // list is tens of MB); X-Total-Count says how many there are.
    // A transfer an event changed (or added, or removed) while the pages
    // were on their way keeps what the event said: the pages may be older.
    // Of two reads on their way at once, the one begun last wins.
    async function loadTransfers() {
      const ticket = transfersFresh.begin();
      try {
        const got = [];
        let total = 0;
        for (let off = 0; off < transferLimit;) {
          const limit = Math.min(maxPage, transferLimit - off);
          const { list, count } = await getPage(`api/shards?offset=${off}&limit=${limit}`);
          got.push(...list);
          total = count;
          off += limit;
          if (list.length < limit) break;
        }
        read('readTransfers');
        if (!ticket.fresh()) return;
        const next = new Map();
        for (const x of got) {
          if (!ticket.changed(x.id)) next.set(x.id, x);
          else if (transfers.has(x.id)) next.set(x.id, transfers.get(x.id));
        }
        for (const [id, x] of transfers) {
          if (!next.has(id) && ticket.changed(id)) next.set(id, x);
        }
        transfers.clear();
        for (const [id, x] of next) transfers.set(id, x);
        transfersTotal = total;
      } catch (err) {
        read('readTransfers');
        toast(t('files.loadFailed', { msg: err.message }));
      }
      renderTransfers();
      renderFiles();
    }

    let filesTimer = 0;
    function filesChanged() {
      clearTimeout(filesTimer);
      filesTimer = setTimeout(loadFiles, 300);
    }

    // apply brings the view up to date with one "shards" event.
    function apply(ev) {
      if (!ev || typeof ev !== 'object') return;
      if (ev.resync) {
        loadTransfers();
        loadFiles();
        reloadPushes();
        return;
      }
      if (ev.transfer) {
        const was = transfers.get(ev.transfer.id);
        transfers.set(ev.transfer.id, ev.transfer);
        if (was && stateLabel(was) === stateLabel(ev.transfer)) updateRow(ev.transfer);
        else if (was) {
          // The file list's badge and the push form follow the state.
          updateRow(ev.transfer);
          renderFiles();
        } else {
          renderTransfers();
          renderFiles();
        }
      }
      if (ev.removed) {
        transfers.delete(ev.removed);
        renderTransfers();
        renderFiles();
      }
      if (ev.push) showPush(ev.push);
      if (ev.files) filesChanged();
    }

    // ---- transfers ----

    // checking says whether download x checks a file already saved under
    // its name before it takes it (its state stays "downloading", with
    // nothing fetched: "downloading 0 %" would be wrong for seconds).
    const checking = (x) => x.state === 'downloading' && Boolean(x.checking);

    function stateLabel(x) {
      return checking(x) ? t('files.state.checking') : t(`files.state.${x.state}`);
    }

    function newRow(x) {
      const refs = {
        name: h('span', { class: 'transfer-name' }),
        state: h('span', { class: 'badge transfer-state' }),
        bar: h('div', { class: 'progress-fill' }),
        progress: null,
        stats: h('span', { class: 'transfer-stats muted' }),
        sources: h('div', { class: 'sources-bar', 'aria-hidden': 'true' }),
        legend: h('ul', { class: 'sources-legend' }),
        error: h('p', { class: 'form-error transfer-error' }),
        actions: h('div', { class: 'transfer-actions' }),
      };
      refs.progress = h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, refs.bar);
      const li = h('li', { class: 'transfer card', dataset: { id: x.id } },
        h('div', { class: 'transfer-head' }, refs.name, refs.state, refs.actions),
        refs.progress, refs.stats, refs.sources, refs.legend, refs.error);
      return { li, refs, actionsFor: '', sourcesFor: null };
    }

    function updateRow(x) {
      const row = rows.get(x.id);
      if (!row) return;
      const { li, refs } = row;
      const chk = checking(x);
      const have = chk ? x.checked || 0 : x.have;
      const pct = x.size > 0 ? Math.min(100, (100 * have) / x.size) : 100;
      if (li.dataset.state !== x.state) li.dataset.state = x.state;
      if (chk) setAttr(li, 'data-checking', '');
      else if (li.hasAttribute('data-checking')) li.removeAttribute('data-checking');
      setText(refs.name, x.name);
      setAttr(refs.name, 'title', x.path || '');
      setText(refs.state, stateLabel(x));
      if (refs.state.dataset.state !== x.state) refs.state.dataset.state = x.state;
      const width = `${pct.toFixed(1)}%`;
      if (refs.bar.style.width !== width) refs.bar.style.width = width;
      setAttr(refs.progress, 'aria-valuenow', pct.toFixed(0));
      setAttr(refs.progress, 'aria-label', t('files.progress', { name: x.name }));
      const parts = [`${formatBytes(have)} / ${formatBytes(x.size)}`, `${Math.floor(pct)}%`];
      if (chk) {
        parts.push(t('files.checking', { path: x.checking }));
      } else if (x.state === 'downloading') {
        parts.push(formatRate(x.rate));
        if (x.rate > 0) parts.push(t('files.eta', { eta: formatETA((x.size - x.have) / x.rate) }));
        if (x.waiting) parts.push(t(`files.waiting.${x.waiting}`));
      } else if (x.state === 'seeding' || x.state === 'done') {
        parts.push(t('files.uploaded', { n: formatBytes(x.uploaded || 0) }));
      }
      setText(refs.stats, parts.join(' · '));
      // Who it came from: one segment per peer, as wide as its share.
      const src = Object.entries(x.sources || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
      const total = src.reduce((s, [, n]) => s + n, 0);
      const srcKey = src.map(([id, n]) => `${nameOf(id)}=${n}`).join(' ');
      if (row.sourcesFor !== srcKey) {
        row.sourcesFor = srcKey;
        refs.sources.hidden = src.length === 0;
        refs.legend.hidden = src.length === 0;
        refs.sources.replaceChildren(...src.map(([id, n]) => {
          const seg = h('span', { class: 'source-seg', dataset: { peer: id }, title: `${nameOf(id)}: ${formatBytes(n)}` });
          seg.style.width = `${((100 * n) / total).toFixed(2)}%`;
          seg.style.background = peerColor(id);
          return seg;
        }));
        refs.legend.replaceChildren(...src.map(([id, n]) => {
          const dot = h('span', { class: 'source-dot', 'aria-hidden': 'true' });
          dot.style.background = peerColor(id);
          return h('li', { dataset: { peer: id } }, dot, `${nameOf(id)} ${Math.round((100 * n) / total)}%`);
        }));
      }
      setText(refs.error, x.state === 'failed' && x.error ? x.error : '');
      // Buttons only when what they can do changes, so a click lands.
      const can = x.state === 'downloading' ? 'pause' : x.state === 'paused' || x.state === 'failed' ? 'resume' : '';
      const key = `${can}|${x.state}|${x.link ? 1 : 0}`;
      if (row.actionsFor !== key) {
        row.actionsFor = key;
        const btn = (act, label) => h('button', { type: 'button', class: 'btn btn-small', dataset: { act, id: x.id } }, label);
        const seeding = x.state === 'seeding' || x.state === 'done';
        refs.actions.replaceChildren(...[
          can && btn(can, t(`files.${can}`)),
          x.link && btn('copy', t('files.copyLink')),
          seeding && btn('push', t('files.push.action')),
          seeding && h('a', { class: 'btn btn-small', href: contentPath(x.id), target: '_blank', rel: 'noopener' }, t('files.open')),
          btn('remove', t(x.state === 'seeding' ? 'files.unshare' : x.state === 'done' ? 'files.remove' : 'files.cancel')),
        ].filter(Boolean));
      }
    }

    function renderTransfers() {
      transfersTitle.textContent = t('files.transfers');
      const list = [...transfers.values()].sort((a, b) => Date.parse(b.added || 0) - Date.parse(a.added || 0) || (a.id < b.id ? -1 : 1));
      transfersEmpty.hidden = list.length > 0;
      transfersEmpty.textContent = t('files.noTransfers');
      const shown = list.slice(0, transferLimit);
      const keep = new Set(shown.map((x) => x.id));
      for (const id of rows.keys()) {
        if (!keep.has(id)) rows.delete(id);
      }
      syncChildren(transferList, shown.map((x) => {
        if (!rows.has(x.id)) rows.set(x.id, newRow(x));
        updateRow(x);
        return rows.get(x.id).li;
      }));
      const total = Math.max(transfersTotal, list.length);
      syncChildren(transfersMore, [moreLine('transfers', shown.length, total, pageTransfers)].filter(Boolean));
    }

    // ---- files: gallery and table ----

    function visible() {
      const q = query.trim().toLowerCase();
      return (files || []).filter((f) => !q || f.name.toLowerCase().includes(q) || (f.type || '').includes(q))
        .sort(sorts[sortBy] || sorts.name);
    }

    function tile(f) {
      let thumb;
      if (f.size > thumbMax) {
        thumb = h('span', { class: 'tile-big' }, t('files.bigImage', { size: formatBytes(f.size) }));
      } else {
        thumb = h('img', { src: contentPath(f.id), alt: f.name, loading: 'lazy', decoding: 'async' });
      }
      const fig = h('figure', { class: 'tile', dataset: { id: f.id } },
        h('button', { type: 'button', class: 'tile-open', dataset: { act: 'view', id: f.id }, title: f.name }, thumb),
        h('figcaption', {}, h('span', { class: 'tile-name' }, f.name), h('span', { class: 'tile-meta muted' })));
      if (f.size > thumbMax) fig.classList.add('big');
      thumb.addEventListener('load', () => fig.classList.add('loaded'));
      thumb.addEventListener('error', () => fig.classList.add('broken'));
      return fig;
    }

    function renderGallery(list) {
      const images = list.filter(isImage);
      galleryTitle.textContent = t('files.gallery');
      galleryTitle.hidden = images.length === 0;
      gallery.hidden = images.length === 0;
      const shown = images.slice(0, tileLimit);
      const keep = new Set(shown.map((f) => f.id));
      for (const id of tiles.keys()) {
        if (!keep.has(id)) tiles.delete(id);
      }
      syncChildren(gallery, [...shown.map((f) => {
        if (!tiles.has(f.id)) tiles.set(f.id, tile(f));
        const fig = tiles.get(f.id);
        setText(fig.querySelector('.tile-meta'), `${formatBytes(f.size)} · ${plural('files.holders', f.holders.length)}`);
        return fig;
      }), moreLine('tiles', shown.length, images.length, pageTiles)].filter(Boolean));
    }

    // fileRow returns the table row of f, made the first time and brought
    // up to date in place after.
    function fileRow(f) {
      let r = fileRows.get(f.id);
      if (!r) {
        const c = {
          name: h('td', { class: 'file-name' }),
          size: h('td', { class: 'num' }),
          type: h('td'),
          holders: h('td', { class: 'num' }),
          open: h('a', { class: 'btn btn-small btn-quiet', href: contentPath(f.id), target: '_blank', rel: 'noopener' }),
          actions: h('td', { class: 'file-actions' }),
        };
        c.actions.append(c.open);
        r = { tr: h('tr', { dataset: { id: f.id } }, c.name, c.size, c.type, c.holders, c.actions), c, action: null, actionFor: '' };
        fileRows.set(f.id, r);
      }
      const { c } = r;
      // A file of this node's beyond the transfers read so far is one it
      // holds whole: seeding.
      const x = transfers.get(f.id) || (f.holders.includes(selfID()) ? { state: 'seeding' } : null);
      const holders = f.holders.map(nameOf);
      setText(c.name, f.name);
      setText(c.size, formatBytes(f.size));
      setAttr(c.type, 'title', f.type || '');
      setText(c.type, kind(f.type));
      setAttr(c.holders, 'title', holders.join(', '));
      setText(c.holders, String(f.holders.length));
      setText(c.open, t('files.open'));
      // The button stays the same node while it does the same thing.
      const key = x ? `badge|${x.state}|${stateLabel(x)}` : `fetch|${t('files.download')}`;
      if (r.actionFor !== key) {
        r.actionFor = key;
        const action = x
          ? h('span', { class: 'badge', dataset: { state: x.state } }, stateLabel(x))
          : h('button', { type: 'button', class: 'btn btn-small', dataset: { act: 'fetch', id: f.id } }, t('files.download'));
        if (r.action) r.action.replaceWith(action);
        else c.actions.append(action);
        r.action = action;
      }
      return r.tr;
    }

    // showInTable shows what (a key) in the table's place, made by make,
    // unless it shows that already.
    function showInTable(what, make) {
      if (tableShows === what) return;
      tableShows = what;
      table.replaceChildren(make());
    }

    function renderFiles() {
      title.textContent = t('files.title');
      allTitle.textContent = t('files.all');
      search.placeholder = t('files.search');
      search.setAttribute('aria-label', t('files.search'));
      sortSel.setAttribute('aria-label', t('files.sort'));
      if (sortSel.options.length === 0 || sortSel.dataset.lang !== t('files.sort')) {
        sortSel.dataset.lang = t('files.sort');
        sortSel.replaceChildren(...Object.keys(sorts).map((k) => h('option', { value: k, selected: k === sortBy }, t(`files.sortBy.${k}`))));
      }
      count.textContent = files ? plural('files.count', files.length) : '';
      const list = visible();
      renderGallery(list);
      if (files === null) {
        const msg = filesError ? t('files.loadFailed', { msg: filesError }) : t('node.loading');
        showInTable(`msg|${msg}`, () => h('p', { class: 'muted' }, msg));
      } else if (files.length === 0) {
        showInTable(`empty|${t('files.empty.title')}`, () => h('div', { class: 'empty', id: 'files-empty' },
          h('div', { class: 'empty-icon', 'aria-hidden': 'true' }, '▤'),
          h('h2', {}, t('files.empty.title')),
          h('p', {}, t('files.empty.body'))));
      } else if (list.length === 0) {
        const msg = t('files.noMatch', { q: query });
        showInTable(`nomatch|${msg}`, () => h('p', { class: 'muted', id: 'files-nomatch' }, msg));
      } else {
        showInTable('table', () => fileCard);
        ['name', 'size', 'type', 'holders'].forEach((k, i) => setText(fileHeads[i], t(`files.col.${k}`)));
        const label = t('files.col.actions');
        if (fileHeads[4].textContent !== label) fileHeads[4].replaceChildren(h('span', { class: 'sr-only' }, label));
        const shown = list.slice(0, rowLimit);
        const keep = new Set(shown.map((f) => f.id));
        for (const id of fileRows.keys()) {
          if (!keep.has(id)) fileRows.delete(id);
        }
        syncChildren(fileBody, shown.map(fileRow));
        syncChildren(fileCard, [fileTable, moreLine('rows', shown.length, list.length, pageRows)].filter(Boolean));
      }
      if (tableShows !== 'table' && fileRows.size > 0) {
        fileRows.clear();
        fileBody.replaceChildren();
      }
      if (viewing) showViewer(viewing);
    }

    // ---- viewer ----

    function showViewer(id) {
      const images = visible().filter(isImage);
      const f = images.find((x) => x.id === id);
      if (!f) {
        closeViewer();
        return;
      }
      viewing = id;
      if (viewerImg.dataset.id !== id) {
        viewerImg.src = contentPath(id);
        viewerImg.dataset.id = id;
      }
      viewerImg.alt = f.name;
      viewerName.textContent = `${f.name} · ${formatBytes(f.size)}`;
      viewerClose.setAttribute('aria-label', t('files.viewer.close'));
      viewerPrev.setAttribute('aria-label', t('files.viewer.prev'));
      viewerNext.setAttribute('aria-label', t('files.viewer.next'));
      viewerPrev.disabled = images.length < 2;
      viewerNext.disabled = images.length < 2;
      viewer.setAttribute('aria-label', f.name);
      if (viewer.hidden) {
        viewer.hidden = false;
        viewerClose.focus();
      }
    }

    function step(d) {
      const images = visible().filter(isImage);
      const i = images.findIndex((x) => x.id === viewing);
      if (i >= 0 && images.length > 1) showViewer(images[(i + d + images.length) % images.length].id);
    }

    function closeViewer() {
      viewing = null;
      viewer.hidden = true;
    }

    // ---- push ----

    // openPush opens the push dialog for transfer x: receivers are nodes
    // picked from the directory, or a chat channel's online members.
    async function openPush(x) {
      pushing = x;
      if (pushForm) setText(pushForm.error, '');
      renderPushDialog();
      if (!pushDialog.open) pushDialog.showModal();
      if (channels === null) {
        try {
          channels = await getJSON('api/channels');
        } catch {
          channels = []; // no chat on this node: nodes only
        }
        if (pushDialog.open) renderPushDialog();
      }
    }

    // The dialog's form is made once and updated in place: the directory
    // is resent every few seconds and changes as nodes come and go, and a
    // box redrawn between its mousedown and mouseup is not ticked. Each
    // node's box is kept (ticked or not) while the node is online; what
    // the user picked stays from one opening to the next.
    let pushForm = null; // its parts, made by the first renderPushDialog
    const pushBoxes = new Map(); // node id → {label, input, name, short}

    function makePushForm() {
      const text = () => document.createTextNode('');
      const radio = (name, value, checked, id) => {
        const label = text();
        return { el: h('label', { class: 'check' }, h('input', { type: 'radio', name, value, checked, id }), label), label };
      };
      const f = {
        title: h('h2'),
        body: h('p', { class: 'muted small' }),
        to: h('legend'),
        modes: ['nodes', 'channel'].map((m) => radio('mode', m, m === 'nodes', `files-push-mode-${m}`)),
        nodes: h('fieldset', { class: 'push-to', id: 'files-push-nodes' }),
        noNodes: h('p', { class: 'muted small' }),
        channels: h('div', { class: 'push-to', id: 'files-push-channels', hidden: true }),
        channelsFor: null,
        plan: h('legend'),
        plans: ['matrix', 'span', 'chain'].map((p) => radio('plan', p, p === 'matrix', `files-push-plan-${p}`)),
        error: h('p', { class: 'form-error', id: 'files-push-error', role: 'alert' }),
        submit: h('button', { type: 'submit', class: 'btn btn-primary', id: 'files-push-btn' }),
        cancel: h('button', { type: 'button', class: 'btn btn-quiet', id: 'files-push-cancel' }),
      };
      pushDialog.replaceChildren(h('form', { id: 'files-push-form', class: 'push-form' },
        f.title, f.body,
        h('fieldset', { class: 'push-mode' }, f.to, f.modes.map((r) => r.el)),
        f.nodes, f.channels,
        h('fieldset', { class: 'push-plan' }, f.plan, f.plans.map((r) => r.el)),
        f.error,
        h('div', { class: 'row-actions' }, f.submit, f.cancel)));
      return f;
    }

    // renderPushDialog brings the dialog up to date: names, the online
    // nodes, the channels, the language.
    function renderPushDialog() {
      if (!pushing) return;
      if (!pushForm) pushForm = makePushForm();
      const f = pushForm;
      setText(f.title, t('files.push.dialogTitle', { name: pushing.name }));
      setText(f.body, t('files.push.body'));
      setText(f.to, t('files.push.to'));
      f.modes.forEach((r, i) => { r.label.data = t(`files.push.mode.${['nodes', 'channel'][i]}`); });
      setText(f.plan, t('files.push.plan'));
      f.plans.forEach((r, i) => { r.label.data = t(`files.push.plan.${['matrix', 'span', 'chain'][i]}`); });
      setText(f.submit, t('files.push.submit'));
      setText(f.cancel, t('files.push.cancel'));
      setText(f.noNodes, t('files.push.noNodes'));

      const others = dir.filter((d) => !d.self);
      const online = new Set(others.map((d) => d.id));
      for (const id of pushBoxes.keys()) {
        if (!online.has(id)) pushBoxes.delete(id);
      }
      syncChildren(f.nodes, others.length === 0 ? [f.noNodes] : others.map((d) => {
        let b = pushBoxes.get(d.id);
        if (!b) {
          b = { input: h('input', { type: 'checkbox', name: 'to', value: d.id }), name: document.createTextNode(''), short: h('code', { class: 'id' }) };
          b.label = h('label', { class: 'check' }, b.input, b.name, b.short);
          pushBoxes.set(d.id, b);
        }
        const name = d.name || shortID(d.id);
        if (b.name.data !== name) b.name.data = name;
        setText(b.short, shortID(d.id));
        return b.label;
      }));

      // The channels are read once; the select is made again only when
      // they or the language change, keeping the one picked.
      const chans = (channels || []).filter((c) => c.joined !== false);
      const key = channels === null ? `loading|${t('node.loading')}` : `${t('files.push.noChannels')}|${t('files.push.mode.channel')}|${chans.map((c) => `${c.id}=${c.name}`).join(' ')}`;
      if (f.channelsFor !== key) {
        f.channelsFor = key;
        const was = (f.channels.querySelector('select') || {}).value;
        f.channels.replaceChildren(channels === null
          ? h('p', { class: 'muted small' }, t('node.loading'))
          : chans.length === 0
            ? h('p', { class: 'muted small' }, t('files.push.noChannels'))
            : h('select', { id: 'files-push-channel', name: 'channel', 'aria-label': t('files.push.mode.channel') },
              chans.map((c) => h('option', { value: c.id, selected: c.id === was }, `#${c.name}`))));
      }
      const mode = f.modes[1].el.querySelector('input').checked ? 'channel' : 'nodes';
      f.nodes.hidden = mode !== 'nodes';
      f.channels.hidden = mode !== 'channel';
    }

    // pushError is what the dialog says when the node refuses a push.
    function pushError(err, channel) {
      if (channel && err.status === 404) return t('files.push.err.noChannel', { name: channel });
      if (channel && err.status === 400 && /no online member/.test(err.message)) return t('files.push.err.noMembers', { name: channel });
      return t('files.push.err.other', { msg: err.message });
    }

    // pushRow returns the panel of push p, made the first time and brought
    // up to date in place after.
    function pushRow(p) {
      let row = pushRows.get(p.id);
      if (!row) {
        const refs = {
          name: h('span', { class: 'transfer-name' }),
          plan: h('span', { class: 'badge' }),
          state: h('span', { class: 'badge push-state' }),
          sent: h('p', { class: 'muted small push-sent' }),
          receivers: h('ul', { class: 'push-receivers' }),
        };
        const li = h('li', { class: 'card push', dataset: { id: p.id } },
          h('div', { class: 'transfer-head' }, refs.name, refs.plan, refs.state), refs.sent, refs.receivers);
        row = { li, refs, recv: new Map() };
        pushRows.set(p.id, row);
      }
      const { li, refs } = row;
      const rs = p.receivers || [];
      const done = rs.filter((r) => r.state === 'done').length;
      const state = p.done ? 'done' : p.lost ? 'lost' : 'running';
      li.dataset.state = state;
      setText(refs.name, (transfers.get(p.resource) || {}).name || shortID(p.resource));
      setText(refs.plan, t(`files.push.plan.${p.plan}`));
      refs.state.dataset.state = state;
      setText(refs.state, t(`files.push.overall.${state}`, { done, n: rs.length }));
      setText(refs.sent, t('files.push.sent', { n: formatBytes(p.uploaded), size: formatBytes(p.size) }));
      const keep = new Set(rs.map((r) => r.node));
      for (const id of row.recv.keys()) {
        if (!keep.has(id)) row.recv.delete(id);
      }
      syncChildren(refs.receivers, rs.map((r) => {
        let rr = row.recv.get(r.node);
        if (!rr) {
          const fill = h('div', { class: 'progress-fill' });
          rr = {
            node: h('span', { class: 'push-node', title: r.node }),
            fill,
            bar: h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, fill),
            state: h('span', { class: 'muted small push-recv-state' }),
          };
          rr.li = h('li', { dataset: { node: r.node } }, rr.node, rr.bar, rr.state);
          row.recv.set(r.node, rr);
        }
        const pct = p.size > 0 ? Math.min(100, (100 * r.have) / p.size) : 100;
        rr.li.dataset.state = r.state;
        setText(rr.node, nameOf(r.node));
        rr.fill.style.width = `${pct.toFixed(1)}%`;
        setAttr(rr.bar, 'aria-valuenow', pct.toFixed(0));
        setAttr(rr.bar, 'aria-label', nameOf(r.node));
        setText(rr.state, `${t(`files.push.state.${r.state}`)} · ${formatBytes(r.have)}`);
        if (r.error) setAttr(rr.state, 'title', r.error);
        else rr.state.removeAttribute('title');
        return rr.li;
      }));
      return li;
    }

    function renderPushes() {
      setText(pushTitle, t('files.push.title'));
      setText(pushEmpty, t('files.push.none'));
      pushEmpty.hidden = pushes.size > 0;
      const list = [...pushes.values()].sort((a, b) => Date.parse(b.started || 0) - Date.parse(a.started || 0));
      syncChildren(pushStatus, list.map(pushRow));
    }

    // showPush shows status st of a push, from an event or a GET, unless
    // it is older than the one shown (see pushBehind).
    function showPush(st) {
      if (!st || typeof st !== 'object' || !st.id) return;
      const had = pushes.get(st.id);
      if (had && pushBehind(st, had)) return;
      pushes.set(st.id, st);
      renderPushes();
    }

    // readPush reads push pid's status and shows it (unless older than
    // the one shown); a failed read throws, with the status in .status.
    // A push the node does not know (404) while shown running is one it
    // lost (it restarted: pushes are not kept over a restart), and shown
    // so: it would otherwise show running for good.
    async function readPush(pid) {
      try {
        const st = await sendJSON('GET', `api/shards/push/${encodeURIComponent(pid)}`);
        read('readPush');
        showPush(st);
      } catch (err) {
        const had = pushes.get(pid);
        if (err.status === 404 && had && !had.done && !had.lost) {
          pushes.set(pid, { ...had, lost: true });
          renderPushes();
        }
        read('readPush');
        throw err;
      }
    }

    // pollPush follows a push this page started until it is done, for a
    // node whose service sends no push events. A read that fails (the node
    // busy or restarting, the network down a moment) is tried again, less
    // and less often: a poll that gave up froze the panel part-way. Only a
    // push the node does not know (4xx: it restarted) ends it.
    async function pollPush(pid) {
      if (polling.has(pid)) return;
      polling.add(pid);
      let wait = 1000;
      try {
        while (!unmounted && !(pushes.get(pid) || {}).done) {
          try {
            await readPush(pid);
            wait = 1000;
          } catch (err) {
            if (err.status >= 400 && err.status < 500) return;
            wait = Math.min(2 * wait, 10000);
          }
          if (unmounted || (pushes.get(pid) || {}).done) return;
          await sleep(wait);
        }
      } finally {
        polling.delete(pid);
      }
    }

    // reloadPushes reads again every push shown as running, after the
    // event stream reconnected or dropped events: their last events may
    // be among those missed.
    function reloadPushes() {
      for (const [pid, p] of pushes) {
        if (!p.done) readPush(pid).catch(() => {});
      }
    }

    // ---- actions ----

    async function act(b) {
      const { act: what, id } = b.dataset;
      try {
        switch (what) {
          case 'pause':
          case 'resume': {
            await sendJSON('POST', `${shardPath(id)}/${what}`);
            // Its event may lag behind; the view follows at once, unless
            // an event for it came while the GET was on its way: the
            // answer may be older than that (a download that finished
            // meanwhile would show as downloading again).
            const ticket = transfersFresh.begin();
            const x = await getJSON(shardPath(id));
            read('readTransfer');
            if (!ticket.changed(id)) apply({ transfer: x });
            break;
          }
          case 'remove': {
            const x = transfers.get(id);
            if (x && x.state !== 'seeding' && b.dataset.confirm !== '1') {
              b.dataset.confirm = '1';
              b.textContent = t('files.cancelConfirm');
              setTimeout(() => {
                const r = rows.get(id);
                if (!r || !b.dataset.confirm) return;
                r.actionsFor = ''; // rebuild the buttons, label and all
                if (transfers.has(id)) updateRow(transfers.get(id));
              }, 4000);
              return;
            }
            await sendJSON('DELETE', shardPath(id));
            transfers.delete(id);
            renderTransfers();
              renderFiles();
            break;
          }
          case 'copy':
            await copy(transfers.get(id).link);
            break;
          case 'fetch': {
            b.disabled = true;
            const x = await sendJSON('POST', 'api/shards/fetch', { id });
            // Its "shards" events may have come first and be newer than
            // this answer: keep them.
            if (!transfers.has(x.id)) transfers.set(x.id, x);
            renderTransfers();
            renderFiles();
            break;
          }
          case 'view':
            showViewer(id);
            break;
          case 'push':
            await openPush(transfers.get(id));
            break;
          case 'more':
            if (id === 'transfers') {
              transferLimit += pageTransfers;
              await loadTransfers();
            } else {
              if (id === 'rows') rowLimit += pageRows;
              else tileLimit += pageTiles;
              renderFiles();
            }
            break;
          default:
        }
      } catch (err) {
        b.disabled = false;
        toast(t('files.actionFailed', { msg: err.message }));
      }
    }

    async function copy(text) {
      try {
        await navigator.clipboard.writeText(text);
        toast(t('files.linkCopied'));
      } catch {
        // No clipboard (not a secure context): put the link where it can be
        // copied by hand.
        linkInput.value = text;
        linkInput.select();
        toast(t('files.copyFailed'));
      }
    }

    async function submit(form, input, error, button, body, done) {
      const v = input.value.trim();
      if (!v) {
        error.textContent = t('files.required');
        return;
      }
      button.disabled = true;
      error.textContent = '';
      try {
        const x = await sendJSON('POST', body.path, body.make(v));
        input.value = '';
        done(x);
      } catch (err) {
        error.textContent = err.message;
      } finally {
        button.disabled = false;
      }
    }

    shareForm.addEventListener('submit', (e) => {
      e.preventDefault();
      submit(shareForm, sharePath, shareError, shareBtn, { path: 'api/shards', make: (path) => ({ path }) }, (x) => {
        transfers.set(x.id, x);
        renderTransfers();
        toast(t('files.shared', { name: x.name }));
        filesChanged();
      });
    });
    linkForm.addEventListener('submit', (e) => {
      e.preventDefault();
      submit(linkForm, linkInput, linkError, linkBtn, { path: 'api/shards/fetch', make: (link) => ({ link }) }, (x) => {
        transfers.set(x.id, x);
        renderTransfers();
        renderFiles();
      });
    });
    pushDialog.addEventListener('change', (e) => {
      if (e.target.name !== 'mode') return;
      pushDialog.querySelector('#files-push-nodes').hidden = e.target.value !== 'nodes';
      pushDialog.querySelector('#files-push-channels').hidden = e.target.value !== 'channel';
    });
    pushDialog.addEventListener('click', (e) => {
      if (e.target.id === 'files-push-cancel') pushDialog.close();
    });
    pushDialog.addEventListener('close', () => {
      pushing = null;
    });
    pushDialog.addEventListener('submit', async (e) => {
      e.preventDefault();
      const form = e.target;
      const data = new FormData(form);
      const error = form.querySelector('#files-push-error');
      const button = form.querySelector('#files-push-btn');
      const body = { id: pushing.id, plan: data.get('plan') };
      const channel = data.get('mode') === 'channel' ? data.get('channel') : null;
      if (data.get('mode') === 'channel') {
        if (!channel) {
          error.textContent = t('files.push.pickChannel');
          return;
        }
        body.channel = channel;
      } else {
        body.to = data.getAll('to');
        if (body.to.length === 0) {
          error.textContent = t('files.push.pickNodes');
          return;
        }
      }
      button.disabled = true;
      error.textContent = '';
      try {
        const { name } = pushing;
        const got = await sendJSON('POST', 'api/shards/push', body);
        pushDialog.close();
        toast(t('files.push.started', { name }));
        pollPush(got.id);
      } catch (err) {
        const c = (channels || []).find((x) => x.id === channel);
        error.textContent = pushError(err, channel && (c ? `#${c.name}` : channel));
      } finally {
        button.disabled = false;
      }
    });

    root.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-act]');
      if (b && root.contains(b)) act(b);
    });
    viewerClose.addEventListener('click', closeViewer);
    viewerPrev.addEventListener('click', () => step(-1));
    viewerNext.addEventListener('click', () => step(1));
    viewer.addEventListener('click', (e) => {
      if (e.target === viewer) closeViewer();
    });
    const onKey = (e) => {
      if (viewer.hidden) return;
      if (e.key === 'Escape') closeViewer();
      else if (e.key === 'ArrowLeft') step(-1);
      else if (e.key === 'ArrowRight') step(1);
    };
    document.addEventListener('keydown', onKey);
    search.addEventListener('input', () => {
      query = search.value;
      rowLimit = pageRows;
      tileLimit = pageTiles;
      renderFiles();
    });
    sortSel.addEventListener('change', () => {
      sortBy = sortSel.value;
      rowLimit = pageRows;
      tileLimit = pageTiles;
      renderFiles();
    });

    const renderAll = () => {
      shareLabel.textContent = t('files.share.label');
      sharePath.placeholder = t('files.share.placeholder');
      shareBtn.textContent = t('files.share.submit');
      linkLabel.textContent = t('files.link.label');
      linkInput.placeholder = 'webrtc://NODE@HOST:PORT/files/MD5?…';
      linkBtn.textContent = t('files.link.submit');
      renderTransfers();
      renderFiles();
      renderPushDialog();
      renderPushes();
    };

    let unmounted = false;
    renderAll();
    // The stream's last event comes at once, before the reads begin: it is
    // older than their answers.
    const offShards = events.on('shards', (ev) => {
      if (ev && ev.transfer) transfersFresh.touch(ev.transfer.id);
      if (ev && ev.removed) transfersFresh.touch(ev.removed);
      apply(ev);
    });
    loadFiles();
    loadTransfers();
    // The stream resends the directory every few seconds. The files are
    // read again only when who is online changes (the file list can be
    // 100,000 entries), and the view redrawn only when that or a name
    // does (a redraw of the push form would drop a half-made choice).
    const setDir = (data) => {
      dir = Array.isArray(data) ? data : [];
      dirByID = new Map(dir.map((d) => [d.id, d]));
      const ids = dir.map((d) => d.id).sort().join(' ');
      const names = dir.map((d) => `${d.id}=${d.name || ''}`).sort().join(' ');
      const joined = dirIDs !== null && ids !== dirIDs;
      if (ids === dirIDs && names === dirNames) return;
      dirIDs = ids;
      dirNames = names;
      renderTransfers();
      renderPushDialog();
      if (joined) filesChanged(); // a node that came or went changes who holds what
      else if (files) renderFiles(); // holders' names
    };
    // The stream sends the directory when it connects and when it
    // changes; a view mounted in between asks for it. An answer read after
    // a directory event may be older than the event: it is dropped (the
    // last event, which on() gives at once, counts as older: the ticket
    // begins after it).
    const offDir = events.on('directory', (data) => {
      dirFresh.touch();
      setDir(data);
    });
    const dirTicket = dirFresh.begin();
    getJSON('api/directory').then((data) => {
      read('readDirectory');
      if (dirTicket.fresh()) setDir(data);
    }, () => read('readDirectory'));
    // After a reconnect, events may have been missed.
    const offStatus = events.onStatus((state) => {
      if (state === 'open') {
        loadTransfers();
        loadFiles();
        reloadPushes();
      }
    });
    const offLang = onLang(() => {
      for (const r of rows.values()) r.actionsFor = '';
      renderAll();
    });
    return () => {
      unmounted = true;
      clearTimeout(filesTimer);
      document.removeEventListener('keydown', onKey);
      offShards();
      offDir();
      offStatus();
      offLang();
      if (pushDialog.open) pushDialog.close();
    };
  },
};
