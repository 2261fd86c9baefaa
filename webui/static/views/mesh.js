// The mesh view: the directory of online nodes drawn as a live graph of
// nodes and links, and the list of online devices with what each offers.
// Data comes from the "directory" event.
import { h, shortID, countRead, freshness } from '../dom.js';
import { getJSON } from '../api.js';
import { t, plural, locale } from '../i18n/index.js';
import { formatSince, formatBytes } from '../format.js';
import { Layout, LINK } from '../graph.js';
import { PENDING_ROOM } from './call.js';

const SVG = 'http://www.w3.org/2000/svg';

// FRAME_BUDGET is how many milliseconds of layout work one animation frame
// may do, so a large mesh settles over several frames instead of freezing
// the tab.
const FRAME_BUDGET = 8;

// DENSE is the node count above which only the labels of this node, its
// peers and the node in focus are drawn.
const DENSE = 60;

// MAX_LINK_PX is the most pixels a link of ideal length is drawn with: a
// small mesh is not blown up to fill the box.
const MAX_LINK_PX = 130;

// The layout outlives the view, so that coming back to it shows the graph
// as it was.
const layout = new Layout();

// svg creates an SVG element with attributes.
function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// truncate shortens s to at most n characters (not UTF-16 units), with an
// ellipsis.
function truncate(s, n) {
  const chars = Array.from(s);
  return chars.length <= n ? s : `${chars.slice(0, n - 1).join('')}…`;
}

function isPlain(v) {
  return v === null || typeof v !== 'object';
}

// scalar shows a JSON number, string, boolean or null.
function scalar(v, max) {
  if (v === null) return '—';
  if (typeof v === 'boolean') return v ? t('mesh.yes') : t('mesh.no');
  if (typeof v === 'number') return new Intl.NumberFormat(locale()).format(v);
  return truncate(String(v), max);
}

// summarize shows any JSON value in about max characters: scalars as they
// are, short lists of scalars joined, other lists as a count, objects as
// "key: value" pairs with nested objects elided.
export function summarize(v, max = 48) {
  if (isPlain(v)) return scalar(v, max);
  if (Array.isArray(v)) {
    if (v.length > 0 && v.length <= 5 && v.every(isPlain)) {
      return truncate(v.map((x) => scalar(x, max)).join(', '), max);
    }
    return plural('mesh.items', v.length);
  }
  const entries = Object.entries(v);
  if (entries.length === 0) return '—';
  const parts = entries.slice(0, 4).map(([k, x]) => {
    let s;
    if (isPlain(x)) s = scalar(x, 24);
    else if (Array.isArray(x)) s = x.length <= 3 && x.every(isPlain) ? x.map((y) => scalar(y, 16)).join(', ') : plural('mesh.items', x.length);
    else s = '{…}';
    return `${k}: ${s}`;
  });
  if (entries.length > 4) parts.push('…');
  return truncate(parts.join(', '), max);
}

// resourceList renders a node's resources as key → summary items.
function resourceList(resources, max, id) {
  const entries = Object.entries(resources || {});
  if (entries.length === 0) return h('span', { class: 'muted' }, t('mesh.offersNothing'));
  return h('ul', { class: 'res-list', id },
    entries.map(([k, v]) => h('li', { class: 'res', title: truncate(`${k}: ${JSON.stringify(v)}`, 400) },
      h('span', { class: 'res-key' }, k),
      h('span', { class: 'res-val' }, summarize(v, max)))));
}

// graphOf turns the directory into the drawing's nodes and links. A link
// joins two known nodes that either one lists as a neighbour; it is mutual
// when both do. degree and adjacency follow the links.
function graphOf(records) {
  const byID = new Map(records.map((r) => [r.id, r]));
  const links = new Map(); // "a b" with a < b → {key, a, b, from, mutual}
  for (const r of records) {
    for (const n of r.neighbors || []) {
      if (n === r.id || !byID.has(n)) continue;
      const [a, b] = r.id < n ? [r.id, n] : [n, r.id];
      const key = `${a} ${b}`;
      const l = links.get(key);
      if (!l) links.set(key, { key, a, b, from: r.id, mutual: false });
      else if (l.from !== r.id) l.mutual = true;
    }
  }
  const adj = new Map(records.map((r) => [r.id, new Set()]));
  for (const l of links.values()) {
    adj.get(l.a).add(l.b);
    adj.get(l.b).add(l.a);
  }
  const self = records.find((r) => r.self);
  const peers = self ? adj.get(self.id) : new Set();
  return { records, byID, links: [...links.values()], adj, self, peers };
}

// shape is what the layout depends on: the nodes and the links.
function shape(g) {
  return `${g.records.map((r) => r.id).join(',')}|${g.links.map((l) => l.key).join(',')}`;
}

function nodeName(r) {
  return r.name || t('peers.unnamed');
}

export default {
  id: 'mesh',
  title: 'nav.mesh',

  mount(root, { events, onLang }) {
    let g = null; // graphOf the last directory; null until the first event
    let lastShape = '';
    let hover = null; // id under the pointer or in keyboard focus
    let selected = null; // id clicked
    let raf = 0;
    let view = null; // current viewBox {x, y, w, h}, units per pixel u, element size cw × ch
    let unit = 1; // layout units per screen pixel

    // The parts are built once and updated in place, so that the graph
    // keeps its elements (and focus) across updates.
    const head = h('div', { class: 'view-head' });
    const empty = h('div', { class: 'empty', id: 'mesh-empty', hidden: true });
    const loading = h('p', { class: 'muted loading' });
    const edgeLayer = svg('g', { class: 'mesh-edges' });
    const nodeLayer = svg('g', { class: 'mesh-nodes' });
    const graph = svg('svg', { id: 'mesh-graph', class: 'mesh-graph', role: 'img' });
    graph.append(edgeLayer, nodeLayer);
    const alone = h('p', { class: 'mesh-alone', id: 'mesh-alone', hidden: true });
    const legend = h('ul', { class: 'mesh-legend' });
    // This node's links from the "peers" event, by peer id: how each
    // travels (route) and what it carried, for the relayed marks.
    let links = new Map();
    const relayLine = h('p', { class: 'mesh-relayed muted', id: 'mesh-relayed', hidden: true });
    const graphCard = h('div', { class: 'card mesh-graph-card' }, graph, alone, legend, relayLine);
    const detail = h('aside', { class: 'card mesh-detail', id: 'mesh-detail', 'aria-live': 'polite' });
    const top = h('div', { class: 'mesh-top' }, graphCard, detail);
    const devicesTitle = h('h2', { class: 'section-title' });
    const tbody = h('tbody', {});
    const thead = h('thead', {});
    const devices = h('div', { class: 'card' }, h('table', { class: 'table', id: 'mesh-devices' }, thead, tbody));
    const content = h('div', { class: 'mesh-content' }, top, devicesTitle, devices);
    root.replaceChildren(head, loading, empty, content);

    const nodeEls = new Map(); // id → <g>
    const linkEls = new Map(); // key → {el, i, j}

    // ---- drawing ----

    // syncElements makes the SVG's nodes and links those of g.
    function syncElements() {
      const index = new Map(layout.ids.map((id, i) => [id, i]));
      for (const [id, el] of nodeEls) {
        if (!g.byID.has(id)) {
          el.remove();
          nodeEls.delete(id);
        }
      }
      const focusable = g.records.length <= 200;
      const dense = g.records.length > DENSE;
      for (const r of g.records) {
        let el = nodeEls.get(r.id);
        if (!el) {
          el = svg('g', { class: 'mesh-node' });
          el.dataset.id = r.id;
          el.append(svg('circle', { r: 8 }), svg('text', { y: 22, 'text-anchor': 'middle' }));
          nodeEls.set(r.id, el);
        }
        const kind = r.self ? 'self' : g.peers.has(r.id) ? 'peer' : 'other';
        el.setAttribute('class', `mesh-node ${kind}`);
        el.firstChild.setAttribute('r', r.self ? 11 : dense && kind === 'other' ? 4.5 : 8);
        el.lastChild.setAttribute('y', r.self ? 25 : 22);
        el.lastChild.textContent = truncate(r.name || shortID(r.id), 20);
        el.setAttribute('aria-label', nodeName(r));
        if (focusable) el.setAttribute('tabindex', '0');
        else el.removeAttribute('tabindex');
        el.dataset.i = index.get(r.id);
      }
      // Others first, then peers, then this node, so that the nodes that
      // matter most are drawn on top.
      const rank = (r) => (r.self ? 2 : g.peers.has(r.id) ? 1 : 0);
      nodeLayer.append(...[0, 1, 2].flatMap((k) => g.records.filter((r) => rank(r) === k).map((r) => nodeEls.get(r.id))));

      const keep = new Set(g.links.map((l) => l.key));
      for (const [key, l] of linkEls) {
        if (!keep.has(key)) {
          l.el.remove();
          linkEls.delete(key);
        }
      }
      for (const l of g.links) {
        let e = linkEls.get(l.key);
        if (!e) {
          e = { el: svg('line') };
          e.el.dataset.a = l.a;
          e.el.dataset.b = l.b;
          linkEls.set(l.key, e);
          edgeLayer.append(e.el);
        }
        e.i = index.get(l.a);
        e.j = index.get(l.b);
        const toSelf = g.self && (l.a === g.self.id || l.b === g.self.id);
        const mine = toSelf ? links.get(l.a === g.self.id ? l.b : l.a) : null;
        const relayed = mine && mine.relayed ? ` relayed route-${mine.route}` : '';
        e.el.setAttribute('class', `mesh-edge${l.mutual ? '' : ' one-way'}${toSelf ? ' self-edge' : ''}${relayed}`);
      }
      graph.classList.toggle('dense', dense);
    }

    // draw moves the elements to the layout's current positions and fits
    // the view around them. Node glyphs are scaled back by the view's
    // units per pixel, so circles and labels keep their size on screen
    // whatever the zoom.
    function draw() {
      fit();
      const scale = ` scale(${unit.toFixed(3)})`;
      for (const el of nodeEls.values()) {
        const [x, y] = layout.at(Number(el.dataset.i));
        el.setAttribute('transform', `translate(${x.toFixed(1)} ${y.toFixed(1)})${scale}`);
      }
      for (const { el, i, j } of linkEls.values()) {
        const [x1, y1] = layout.at(i);
        const [x2, y2] = layout.at(j);
        el.setAttribute('x1', x1.toFixed(1));
        el.setAttribute('y1', y1.toFixed(1));
        el.setAttribute('x2', x2.toFixed(1));
        el.setAttribute('y2', y2.toFixed(1));
      }
    }

    // fit sets the viewBox around the nodes, with room for labels, and no
    // closer than a link of MAX_LINK_PX. It changes only when the nodes
    // leave the view or shrink well inside it, so that small moves do not
    // zoom the whole picture.
    function fit() {
      let minX = Infinity;
      let minY = Infinity;
      let maxX = -Infinity;
      let maxY = -Infinity;
      for (let i = 0; i < layout.ids.length; i++) {
        const [x, y] = layout.at(i);
        minX = Math.min(minX, x);
        minY = Math.min(minY, y);
        maxX = Math.max(maxX, x);
        maxY = Math.max(maxY, y);
      }
      if (minX > maxX) return;
      const cw = graph.clientWidth || 720;
      const ch = graph.clientHeight || 440;
      const padX = 64; // pixels, for labels
      const padY = 36;
      const u = Math.max((maxX - minX) / Math.max(cw - 2 * padX, 1),
        (maxY - minY) / Math.max(ch - 2 * padY, 1), LINK / MAX_LINK_PX);
      if (view) {
        const inside = minX - padX * view.u >= view.x && maxX + padX * view.u <= view.x + view.w &&
          minY - padY * view.u >= view.y && maxY + padY * view.u <= view.y + view.h;
        if (inside && u > view.u * 0.75 && view.cw === cw && view.ch === ch) return;
      }
      const cx = (minX + maxX) / 2;
      const cy = (minY + maxY) / 2;
      view = { x: cx - (cw * u) / 2, y: cy - (ch * u) / 2, w: cw * u, h: ch * u, u, cw, ch };
      unit = u;
      graph.setAttribute('viewBox', [view.x, view.y, view.w, view.h].map((v) => v.toFixed(1)).join(' '));
    }

    function frame() {
      const start = performance.now();
      do {
        layout.tick();
      } while (layout.running && performance.now() - start < FRAME_BUDGET);
      draw();
      if (layout.running) {
        raf = requestAnimationFrame(frame);
      } else {
        raf = 0;
        graph.dataset.state = 'settled';
      }
    }

    function animate() {
      graph.dataset.state = 'running';
      if (!raf) raf = requestAnimationFrame(frame);
    }

    // ---- focus: hover, keyboard and click ----

    function focusID() {
      const id = hover || selected;
      return id && g && g.byID.has(id) ? id : null;
    }

    function renderFocus() {
      const id = focusID();
      const near = id ? g.adj.get(id) : null;
      graph.classList.toggle('focus', Boolean(id));
      for (const [nid, el] of nodeEls) {
        el.classList.toggle('active', nid === id);
        el.classList.toggle('near', Boolean(near && near.has(nid)));
        el.classList.toggle('selected', nid === selected);
      }
      for (const { el } of linkEls.values()) {
        el.classList.toggle('hl', Boolean(id) && (el.dataset.a === id || el.dataset.b === id));
      }
      for (const tr of tbody.children) tr.classList.toggle('selected', tr.dataset.id === selected);
      renderDetail();
    }

    function renderDetail() {
      const id = focusID();
      if (!id) {
        detail.replaceChildren(
          h('h2', {}, t('mesh.detail.title')),
          h('p', { class: 'muted' }, t('mesh.hint')));
        return;
      }
      const r = g.byID.get(id);
      const [heard, heardTitle] = formatSince(r.heard, Date.now());
      const badge = r.self ? h('span', { class: 'badge self' }, t('mesh.legend.self'))
        : g.peers.has(id) ? h('span', { class: 'badge peer' }, t('mesh.legend.peer')) : null;
      detail.replaceChildren(
        h('h2', { class: 'detail-name' }, nodeName(r)),
        ...(badge ? [badge] : []),
        h('dl', { class: 'detail-list' },
          h('dt', {}, t('mesh.col.id')), h('dd', {}, h('code', { class: 'id', title: r.id }, shortID(r.id))),
          h('dt', {}, t('mesh.col.links')), h('dd', { id: 'mesh-detail-links' }, plural('mesh.links', g.adj.get(id).size)),
          h('dt', {}, t('mesh.col.heard')), h('dd', { title: heardTitle }, heard),
          h('dt', {}, t('mesh.col.offers')), h('dd', {}, resourceList(r.resources, 80))),
        ...[callButton(r)].filter(Boolean));
    }

    // callButton opens a call room named from both node IDs, so that both
    // ends find the same room from either side.
    function callButton(r) {
      if (r.self || !g.self || !(r.resources && r.resources.calls)) return null;
      const room = `dm-${[g.self.id, r.id].map((id) => id.slice(0, 16)).sort().join('-')}`;
      const b = h('button', { type: 'button', class: 'btn btn-small', id: 'mesh-call', title: t('mesh.call.title') }, t('mesh.call'));
      b.addEventListener('click', () => {
        try {
          sessionStorage.setItem(PENDING_ROOM, room);
        } catch {
          // no storage: the Call view opens empty
        }
        location.hash = '#/call';
      });
      return b;
    }

    const nodeAt = (e) => {
      const el = e.target instanceof Element && e.target.closest('.mesh-node');
      return el ? el.dataset.id : null;
    };
    graph.addEventListener('pointerover', (e) => {
      const id = nodeAt(e);
      if (id !== hover) {
        hover = id;
        renderFocus();
      }
    });
    graph.addEventListener('pointerleave', () => {
      hover = null;
      renderFocus();
    });
    graph.addEventListener('click', (e) => {
      const id = nodeAt(e);
      selected = id && id !== selected ? id : null;
      renderFocus();
    });
    graph.addEventListener('focusin', (e) => {
      hover = nodeAt(e);
      renderFocus();
    });
    graph.addEventListener('focusout', () => {
      hover = null;
      renderFocus();
    });
    graph.addEventListener('keydown', (e) => {
      const id = nodeAt(e);
      if (id && (e.key === 'Enter' || e.key === ' ')) {
        e.preventDefault();
        selected = id !== selected ? id : null;
        renderFocus();
      }
    });
    tbody.addEventListener('click', (e) => {
      const tr = e.target instanceof Element && e.target.closest('tr[data-id]');
      if (!tr) return;
      selected = tr.dataset.id !== selected ? tr.dataset.id : null;
      renderFocus();
    });

    // ---- text: head, legend, table ----

    function renderText() {
      const n = g ? g.records.length : 0;
      head.replaceChildren(
        h('h1', {}, t('mesh.title')),
        g && h('span', { class: 'count', id: 'mesh-count' },
          `${plural('mesh.count', n)} · ${plural('mesh.links', g.links.length)}`));
      loading.textContent = t('node.loading');
      loading.hidden = g !== null;
      empty.hidden = !(g && n === 0);
      content.hidden = !(g && n > 0);
      empty.replaceChildren(
        h('div', { class: 'empty-icon', 'aria-hidden': 'true' }, '◌'),
        h('h2', {}, t('mesh.empty.title')),
        h('p', {}, t('mesh.empty.body')));
      alone.textContent = t('mesh.alone');
      alone.hidden = !(g && n === 1);
      graph.setAttribute('aria-label', t('mesh.graph.label'));
      const mark = (cls) => h('span', { class: `mark ${cls}`, 'aria-hidden': 'true' });
      legend.replaceChildren(
        h('li', {}, mark('self'), t('mesh.legend.self')),
        h('li', {}, mark('peer'), t('mesh.legend.peer')),
        h('li', {}, mark('other'), t('mesh.legend.other')),
        h('li', {}, mark('one-way'), t('mesh.legend.oneWay')),
        h('li', {}, mark('relayed'), t('mesh.legend.relayed')));
      renderRelayed();
      devicesTitle.textContent = t('mesh.devices');
      thead.replaceChildren(h('tr', {},
        h('th', { scope: 'col' }, t('mesh.col.name')),
        h('th', { scope: 'col' }, t('mesh.col.id')),
        h('th', { scope: 'col', class: 'num' }, t('mesh.col.links')),
        h('th', { scope: 'col' }, t('mesh.col.offers')),
        h('th', { scope: 'col' }, t('mesh.col.heard'))));
      renderRows();
      renderFocus();
    }

    // renderRelayed says how many of this node's links a relay carries
    // (TURN or a bridging node) and their share of the bytes it moved.
    function renderRelayed() {
      const all = [...links.values()];
      const relayed = all.filter((p) => p.relayed);
      relayLine.hidden = relayed.length === 0;
      if (relayed.length === 0) return;
      const bytes = (ps) => ps.reduce((n, p) => n + (p.bytes_in || 0) + (p.bytes_out || 0), 0);
      const total = bytes(all);
      const share = total > 0 ? Math.round((100 * bytes(relayed)) / total) : 0;
      relayLine.replaceChildren(t('mesh.relayed', {
        n: relayed.length, total: all.length, share, bytes: formatBytes(bytes(relayed)),
      }));
      relayLine.dataset.share = String(share);
    }

    function renderRows() {
      if (!g) return;
      const now = Date.now();
      tbody.replaceChildren(...g.records.map((r) => {
        const [heard, heardTitle] = formatSince(r.heard, now);
        const kind = r.self ? 'self' : g.peers.has(r.id) ? 'peer' : 'other';
        return h('tr', { dataset: { id: r.id }, class: r.id === selected ? 'selected' : null },
          h('td', { class: 'peer-name' },
            h('span', { class: `mark ${kind}`, 'aria-hidden': 'true' }),
            r.name || h('span', { class: 'muted' }, t('peers.unnamed')),
            r.self && h('span', { class: 'badge self' }, t('mesh.you'))),
          h('td', {}, h('code', { class: 'id', title: r.id }, shortID(r.id))),
          h('td', { class: 'num' }, g.adj.get(r.id).size),
          h('td', { class: 'offers' }, resourceList(r.resources, 40)),
          h('td', { title: heardTitle }, heard));
      }));
    }

    // ---- data ----

    function update(records) {
      g = graphOf(records);
      const s = shape(g);
      if (s !== lastShape) {
        lastShape = s;
        // This node first: on a fresh layout it is placed in the middle.
        const ids = g.records.filter((r) => r.self).concat(g.records.filter((r) => !r.self)).map((r) => r.id);
        layout.aspect = (graph.clientWidth || 720) / (graph.clientHeight || 440);
        layout.set(ids, g.links.map((l) => [l.a, l.b]));
        syncElements();
        draw();
        animate();
      } else {
        syncElements(); // names and peer marks may have changed
      }
      renderText();
    }

    const resized = new ResizeObserver(() => {
      if (!g) return;
      view = null;
      draw();
    });
    resized.observe(graph);

    renderText();
    // The stream sends the directory when it connects, and again only
    // when it changes or every few seconds; the page keeps the last one
    // (app.js), and the view asks for it too, for a stream that has not
    // sent one yet. The answer is dropped if an event came while it was on
    // its way (it may be older); the last event, which on() gives at once,
    // counts as older.
    const dirFresh = freshness();
    let unmounted = false;
    const offDir = events.on('directory', (data) => {
      dirFresh.touch();
      update(Array.isArray(data) ? data : []);
    });
    const dirTicket = dirFresh.begin();
    getJSON('api/directory').then((data) => {
      if (dirTicket.fresh() && !unmounted) update(Array.isArray(data) ? data : []);
    }, () => {}).finally(() => countRead(root, 'readDirectory'));
    const setLinks = (data) => {
      links = new Map((Array.isArray(data) ? data : []).map((p) => [p.id, p]));
      if (g) syncElements();
      renderRelayed();
    };
    // A poll answered before a "peers" event but read after it is older (a
    // link that came or turned relayed meanwhile would be gone until the
    // next poll); so is one begun before another whose answer came first.
    const peersFresh = freshness();
    const offPeers = events.on('peers', (data) => {
      peersFresh.touch();
      setLinks(data);
    });
    // The "peers" event comes when links change; the bytes they carry
    // change all the time, so the relay's share is read again now and then.
    const poll = new AbortController();
    const timer = setInterval(() => {
      const ticket = peersFresh.begin();
      getJSON('/api/peers', { signal: poll.signal }).then((data) => {
        if (ticket.fresh()) setLinks(data);
      }, () => {}).finally(() => countRead(root, 'readPeers'));
    }, 5000);
    const offLang = onLang(renderText);
    return () => {
      unmounted = true;
      offDir();
      offPeers();
      clearInterval(timer);
      poll.abort();
      offLang();
      resized.disconnect();
      if (raf) cancelAnimationFrame(raf);
      // The run was cut short: keep where the nodes got to.
      layout.commit();
    };
  },
};
