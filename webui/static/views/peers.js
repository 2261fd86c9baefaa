// The peers view: the node's live links, from the "peers" event.
import { h, shortID } from '../dom.js';
import { t, plural, locale } from '../i18n/index.js';
import { formatSince } from '../format.js';

// formatRTT shows a round-trip time in milliseconds.
function formatRTT(ms) {
  if (!(ms > 0)) return t('peers.rttUnknown');
  const n = new Intl.NumberFormat(locale(), { maximumFractionDigits: ms < 100 ? 1 : 0 });
  return `${n.format(ms)} ms`;
}

// rttClass grades a round trip for the colour of its dot.
function rttClass(ms) {
  if (!(ms > 0)) return 'rtt-unknown';
  if (ms < 50) return 'rtt-good';
  if (ms < 200) return 'rtt-fair';
  return 'rtt-poor';
}

function row(p, now) {
  const [since, sinceTitle] = formatSince(p.since, now);
  return h('tr', { dataset: { id: p.id } },
    h('td', { class: 'peer-name' }, p.name || h('span', { class: 'muted' }, t('peers.unnamed'))),
    h('td', {}, h('code', { class: 'id', title: p.id }, shortID(p.id))),
    h('td', { class: 'num' },
      h('span', { class: `rtt-dot ${rttClass(p.rtt_ms)}`, 'aria-hidden': 'true' }),
      formatRTT(p.rtt_ms)),
    h('td', {}, h('span', { class: `dir ${p.outbound ? 'out' : 'in'}` },
      p.outbound ? '↗ ' : '↙ ', t(p.outbound ? 'peers.outbound' : 'peers.inbound'))),
    h('td', { title: sinceTitle }, since),
  );
}

export default {
  id: 'peers',
  title: 'nav.peers',

  // mount renders into root and keeps it current; it returns the cleanup.
  mount(root, { events, onLang }) {
    let peers = null; // null until the first event

    const render = () => {
      const now = Date.now();
      const list = peers || [];
      const head = h('div', { class: 'view-head' },
        h('h1', {}, t('peers.title')),
        peers && h('span', { class: 'count', id: 'peers-count' }, plural('peers.count', list.length)));
      let body;
      if (peers === null) {
        body = h('p', { class: 'muted loading' }, t('node.loading'));
      } else if (list.length === 0) {
        body = h('div', { class: 'empty', id: 'peers-empty' },
          h('div', { class: 'empty-icon', 'aria-hidden': 'true' }, '◌'),
          h('h2', {}, t('peers.empty.title')),
          h('p', {}, t('peers.empty.body')));
      } else {
        body = h('div', { class: 'card' },
          h('table', { class: 'table', id: 'peers-table' },
            h('thead', {}, h('tr', {},
              h('th', { scope: 'col' }, t('peers.col.name')),
              h('th', { scope: 'col' }, t('peers.col.id')),
              h('th', { scope: 'col', class: 'num' }, t('peers.col.rtt')),
              h('th', { scope: 'col' }, t('peers.col.direction')),
              h('th', { scope: 'col' }, t('peers.col.since')))),
            h('tbody', {}, list.map((p) => row(p, now)))));
      }
      root.replaceChildren(head, body);
    };

    render();
    const offPeers = events.on('peers', (data) => {
      peers = Array.isArray(data) ? data : [];
      render();
    });
    const offLang = onLang(render);
    return () => {
      offPeers();
      offLang();
    };
  },
};
