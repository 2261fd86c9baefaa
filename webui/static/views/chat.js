// The chat view: the channel list (joined and discoverable, and a form to
// create one) and the selected channel's messages with a composer. Data
// comes from /api/channels and .../messages; "chat" events keep it live.
//
// Burn after read: a message of a burn channel counts as read once it has
// been at least half in view, with the tab visible, for BURN_AFTER ms in
// all (a bar on it runs down meanwhile). Then the view tells the node
// (POST .../read), which forgets it, and removes it; other open views drop
// it on the "burned" event. A burn message the user never looked at long
// enough (left the channel first) stays unread and is shown again.
//
// The view opens on the channel used last (kept in localStorage), or on the
// only joined channel. Channels other nodes created come with the directory,
// which raises no chat event: the list is fetched again when it changes.
import { h, shortID, countRead, freshness } from '../dom.js';
import { t, plural, locale } from '../i18n/index.js';
import { getJSON, sendJSON, served } from '../api.js';
import { chatFilter } from '../plugins-host.js';

// BURN_AFTER is how long a burn message must have been seen.
export const BURN_AFTER = 5000;
// PAGE is how many messages a fetch asks for.
const PAGE = 100;
// MAX_TEXT is the longest message in bytes of UTF-8, as the server allows.
const MAX_TEXT = 16384;

const storageKey = 'catnest.chat.channel';
const enc = new TextEncoder();

function remembered() {
  try {
    return localStorage.getItem(storageKey);
  } catch {
    return null;
  }
}

function remember(id) {
  try {
    if (id) localStorage.setItem(storageKey, id);
    else localStorage.removeItem(storageKey);
  } catch {
    // not remembered
  }
}

// icon is a small monochrome icon drawn by CSS (no emoji font needed);
// with a label it is announced, else hidden from screen readers.
function icon(name, label, extra = '') {
  return label
    ? h('span', { class: `icon icon-${name} ${extra}`.trim(), role: 'img', 'aria-label': label, title: label })
    : h('span', { class: `icon icon-${name} ${extra}`.trim(), 'aria-hidden': 'true' });
}

const chPath = (id) => `api/channels/${encodeURIComponent(id)}`;
const msgPath = (ch, id) => `${chPath(ch)}/messages/${encodeURIComponent(id)}`;

// byTime orders messages oldest first, by time, then ID.
function byTime(a, b) {
  const d = Date.parse(a.time) - Date.parse(b.time);
  return d || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function formatTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return ['', ''];
  const now = new Date();
  const sameDay = d.toDateString() === now.toDateString();
  const opts = sameDay
    ? { hour: '2-digit', minute: '2-digit' }
    : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
  return [d.toLocaleString(locale(), opts), d.toLocaleString(locale())];
}

export default {
  id: 'chat',
  title: 'nav.chat',

  // available says whether the node has chat: without it /api/channels
  // answers 404.
  available: () => served('api/channels'),

  mount(root, { events, onLang, toast }) {
    let self = null; // this node's ID
    let channels = null; // null until loaded
    let channelsError = '';
    let selected = remembered();
    const unread = new Set(); // channel IDs with messages not seen

    // The selected channel's messages.
    let msgs = [];
    let msgState = 'idle'; // idle | loading | ready | error
    let msgError = '';
    let hasOlder = false;
    let loadingOlder = false;
    // The time of the oldest message read in a page: the next older page
    // is read from there. Not msgs[0]: a late message event may put an
    // older one first, and paging from it would skip those between.
    let pagedFrom = null;
    // Retractions and burns that came while older messages were on their
    // way: the page may have been answered before them, so they are done
    // again to it (a retracted message would show its text again).
    let olderRaced = [];
    let pending = []; // events that arrived while loading
    let loadToken = 0;
    let settingsOpen = false;
    let mainFor = null; // the channel the main pane was built for, and how
    let sideFor = null; // what the channel list was built from

    const rows = new Map(); // message ID → {key, el}
    const burn = new Map(); // message ID → {seen ms, visible, reading}
    let burnTimer = 0;

    // ---- skeleton ----

    const title = h('h1', { id: 'chat-title' });
    const head = h('div', { class: 'view-head' }, title);
    const side = h('aside', { class: 'chat-side card', id: 'chat-side' });
    const main = h('section', { class: 'chat-main card', id: 'chat-main' });
    root.replaceChildren(head, h('div', { class: 'chat' }, side, main));

    // The message log and the composer outlive re-renders of the pane, so
    // that scroll position and a half-written message survive.
    const older = h('button', { type: 'button', class: 'btn btn-quiet chat-older', id: 'chat-older' });
    const list = h('ol', { class: 'chat-messages', id: 'chat-messages' });
    const placeholder = h('div', { class: 'chat-placeholder muted', id: 'chat-placeholder' });
    const log = h('div', { class: 'chat-log', id: 'chat-log', role: 'log', tabindex: '0' }, older, placeholder, list);
    const input = h('textarea', { id: 'chat-input', rows: '1', maxlength: String(MAX_TEXT) });
    const send = h('button', { type: 'submit', class: 'btn btn-primary', id: 'chat-send' });
    const composerError = h('p', { class: 'form-error', id: 'chat-composer-error', role: 'alert' });
    const composerHint = h('p', { class: 'chat-hint muted' });
    const composer = h('form', { class: 'chat-composer', id: 'chat-composer' },
      h('div', { class: 'chat-compose-row' }, input, send), composerError, composerHint);

    // ---- data ----

    const current = () => (channels || []).find((c) => c.id === selected) || null;

    // loadChannels fetches the channel list. With no channel (or one that
    // is gone) selected, it opens the only joined channel, if there is
    // one, and then returns true: select has loaded its messages.
    // Events start reads while one is on its way, and the older answer
    // may come last: of the reads begun, only the newest answer read so
    // far is shown.
    const channelsFresh = freshness();
    async function loadChannels() {
      const ticket = channelsFresh.begin();
      let got;
      let error = '';
      try {
        got = await getJSON('api/channels');
      } catch (err) {
        error = err.message;
      }
      countRead(root, 'readChannels');
      if (!ticket.fresh()) return false;
      if (error) channelsError = error;
      else {
        channels = got;
        channelsError = '';
      }
      if (channels && !current()) {
        const joined = channels.filter((c) => c.joined);
        const pick = joined.length === 1 ? joined[0].id : null;
        if (pick || selected) {
          select(pick);
          return true;
        }
      }
      renderSide();
      renderMain();
      return false;
    }

    // reload fetches the channels and the messages of the selected one.
    const reload = () => loadChannels().then((picked) => picked || loadMessages());

    // The directory changes when a node comes, goes or changes what it
    // offers, channels included; fetch the list again once it settles.
    let dirTimer = 0;
    function directoryChanged() {
      clearTimeout(dirTimer);
      dirTimer = setTimeout(loadChannels, 300);
    }

    async function loadMessages() {
      const c = current();
      const token = ++loadToken;
      msgs = [];
      pending = [];
      hasOlder = false;
      pagedFrom = null;
      clearRows();
      if (!c || !c.joined) {
        msgState = 'idle';
        renderMessages();
        return;
      }
      msgState = 'loading';
      renderMessages();
      try {
        const got = await getJSON(`${chPath(c.id)}/messages?limit=${PAGE}`);
        if (token !== loadToken) return;
        msgs = got;
        hasOlder = got.length === PAGE;
        pagedFrom = got.length ? got[0].time : null; // oldest first
        msgState = 'ready';
        msgError = '';
        const replay = pending;
        pending = [];
        for (const ev of replay) apply(ev);
      } catch (err) {
        if (token !== loadToken) return;
        msgState = 'error';
        msgError = err.message;
      }
      renderMessages();
      log.scrollTop = log.scrollHeight;
    }

    async function loadOlder() {
      const c = current();
      if (!c || loadingOlder || pagedFrom === null) return;
      loadingOlder = true;
      olderRaced = [];
      renderOlder();
      const token = loadToken;
      try {
        const before = encodeURIComponent(pagedFrom);
        const got = await getJSON(`${chPath(c.id)}/messages?before=${before}&limit=${PAGE}`);
        if (token !== loadToken) return;
        hasOlder = got.length === PAGE;
        if (got.length) pagedFrom = got[0].time;
        const known = new Set(msgs.map((m) => m.id));
        const height = log.scrollHeight;
        // Sorted: a late message older than the page was shown above it.
        msgs = got.filter((m) => !known.has(m.id)).concat(msgs).sort(byTime);
        for (const ev of olderRaced) undo(ev);
        renderMessages();
        log.scrollTop += log.scrollHeight - height; // keep what was in view in place
      } catch (err) {
        toast(err.message);
      } finally {
        loadingOlder = false;
        renderOlder();
      }
    }

    function select(id) {
      if (id === selected && mainFor) return;
      selected = id;
      remember(id);
      unread.delete(id);
      settingsOpen = false;
      composerError.textContent = '';
      renderSide();
      renderMain();
      loadMessages();
    }

    // apply brings the view up to date with one "chat" event.
    function apply(ev) {
      if (!ev || typeof ev !== 'object') return;
      switch (ev.type) {
        case 'channel':
          loadChannels();
          return;
        case 'resync':
          reload();
          return;
        default:
      }
      if (ev.channel !== selected) {
        if (ev.type === 'message' && ev.message && !ev.message.mine) {
          unread.add(ev.channel);
          renderSide();
        }
        if (ev.type === 'burned') burn.delete(ev.id);
        return;
      }
      if (msgState === 'loading') {
        pending.push(ev);
        return;
      }
      if (msgState !== 'ready') return;
      if (ev.type === 'message' && ev.message) {
        const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
        upsert(ev.message);
        renderMessages();
        if (nearBottom || ev.message.mine) log.scrollTop = log.scrollHeight;
      } else if (ev.type === 'retract' || ev.type === 'burned') {
        if (loadingOlder) olderRaced.push(ev);
        undo(ev);
        renderMessages();
      }
    }

    // undo takes out of msgs what a "retract" or "burned" event says is
    // gone; the caller draws.
    function undo(ev) {
      const i = msgs.findIndex((x) => x.id === ev.id);
      if (ev.type === 'burned') {
        if (i >= 0) msgs.splice(i, 1);
        burn.delete(ev.id);
      } else if (i >= 0) {
        msgs[i].retracted = true;
        msgs[i].text = '';
      }
    }

    function upsert(m) {
      const i = msgs.findIndex((x) => x.id === m.id);
      if (i >= 0) {
        msgs[i] = m;
        return;
      }
      let j = msgs.length;
      while (j > 0 && byTime(msgs[j - 1], m) > 0) j--;
      msgs.splice(j, 0, m);
    }

    function drop(id) {
      undo({ type: 'burned', id });
      renderMessages();
    }

    // ---- actions ----

    async function post() {
      const c = current();
      const text = input.value;
      if (!c || text.trim() === '') return;
      const bytes = enc.encode(text).length;
      if (bytes > MAX_TEXT) {
        composerError.textContent = t('chat.tooLong', { n: bytes, max: MAX_TEXT });
        return;
      }
      send.disabled = true;
      try {
        const m = await sendJSON('POST', `${chPath(c.id)}/messages`, { text });
        input.value = '';
        fitInput();
        composerError.textContent = '';
        if (c.id === selected && msgState === 'ready') {
          upsert(m);
          renderMessages();
          log.scrollTop = log.scrollHeight;
        }
      } catch (err) {
        composerError.textContent = t('chat.sendFailed', { msg: err.message });
      } finally {
        send.disabled = false;
        input.focus();
      }
    }

    async function act(button) {
      const li = button.closest('li[data-id]');
      const m = li && msgs.find((x) => x.id === li.dataset.id);
      const c = current();
      if (!m || !c) return;
      if (button.dataset.act === 'retract') {
        // Retracting cannot be undone: the first click asks.
        if (button.dataset.confirm !== '1') {
          button.dataset.confirm = '1';
          button.textContent = t('chat.retractConfirm');
          setTimeout(() => {
            if (!button.isConnected) return;
            delete button.dataset.confirm;
            button.textContent = t('chat.retract');
          }, 4000);
          return;
        }
        try {
          await sendJSON('POST', `${msgPath(c.id, m.id)}/retract`);
          m.retracted = true;
          m.text = '';
          renderMessages();
        } catch (err) {
          toast(t('chat.actionFailed', { msg: err.message }));
        }
      } else if (button.dataset.act === 'mark') {
        const on = !m.marked;
        try {
          await sendJSON(on ? 'POST' : 'DELETE', `${msgPath(c.id, m.id)}/mark`);
          m.marked = on;
          renderMessages();
        } catch (err) {
          toast(t('chat.actionFailed', { msg: err.message }));
        }
      }
    }

    async function create(form) {
      const name = form.elements.name.value.trim();
      const err = form.querySelector('.form-error');
      if (!name) return;
      try {
        const c = await sendJSON('POST', 'api/channels', { name, burn: form.elements.burn.checked });
        form.reset();
        err.textContent = '';
        selected = c.id;
        remember(c.id);
        mainFor = null;
        await loadChannels();
        loadMessages();
      } catch (e) {
        err.textContent = e.message;
      }
    }

    async function join(id) {
      try {
        await sendJSON('POST', `${chPath(id)}/join`);
        selected = id;
        remember(id);
        mainFor = null;
        await loadChannels();
        loadMessages();
      } catch (err) {
        toast(t('chat.actionFailed', { msg: err.message }));
      }
    }

    async function leave(id) {
      try {
        await sendJSON('POST', `${chPath(id)}/leave`);
        mainFor = null;
        await loadChannels();
        loadMessages();
      } catch (err) {
        toast(t('chat.actionFailed', { msg: err.message }));
      }
    }

    async function saveSettings(form) {
      const c = current();
      if (!c) return;
      const body = {
        range: {
          days: Math.max(0, Math.floor(Number(form.elements.days.value) || 0)),
          count: Math.max(0, Math.floor(Number(form.elements.count.value) || 0)),
        },
      };
      if (form.elements.burn && form.elements.burn.checked !== c.burn) body.burn = form.elements.burn.checked;
      const err = form.querySelector('.form-error');
      try {
        await sendJSON('PUT', `${chPath(c.id)}/settings`, body);
        err.textContent = '';
        settingsOpen = false;
        mainFor = null;
        toast(t('chat.settings.saved'));
        await loadChannels();
      } catch (e) {
        err.textContent = e.message;
      }
    }

    // ---- burn after read ----

    const observer = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const b = burn.get(e.target.dataset.id);
        if (b) b.visible = e.intersectionRatio >= 0.5;
      }
    }, { root: log, threshold: [0, 0.5, 1] });

    let lastTick = performance.now();
    function tick() {
      const now = performance.now();
      const dt = now - lastTick;
      lastTick = now;
      if (document.visibilityState !== 'visible') return;
      const c = current();
      for (const [id, b] of burn) {
        if (!b.visible || b.reading) continue;
        b.seen += dt;
        const row = rows.get(id);
        if (row) row.el.style.setProperty('--burn-left', String(Math.max(0, 1 - b.seen / BURN_AFTER)));
        if (b.seen >= BURN_AFTER && c) {
          b.reading = true;
          if (row) row.el.classList.add('burning');
          sendJSON('POST', `${msgPath(c.id, id)}/read`)
            .catch((err) => console.warn('chat: read', id, err.message))
            .finally(() => setTimeout(() => drop(id), 300)); // let it fade
        }
      }
    }

    // ---- rendering ----

    function channelItem(c) {
      const active = c.id === selected;
      return h('li', {},
        h('button', {
          type: 'button',
          class: `chan${active ? ' active' : ''}${c.joined ? '' : ' discover'}`,
          dataset: { id: c.id, act: 'select' },
          title: c.joined ? null : plural('chat.members', c.members || 0),
          'aria-current': active ? 'true' : null,
        },
        h('span', { class: 'chan-hash', 'aria-hidden': 'true' }, '#'),
        h('span', { class: 'chan-name' }, c.name),
        c.burn && icon('burn', t('chat.burn'), 'burn-icon'),
        unread.has(c.id) && h('span', { class: 'unread-dot', title: t('chat.unread') })),
        !c.joined && h('button', { type: 'button', class: 'btn btn-small', dataset: { id: c.id, act: 'join' } }, t('chat.join')));
    }

    function renderSide() {
      // Rebuild only on a change, so a half-typed channel name keeps its
      // focus when the list is fetched again.
      const key = JSON.stringify([channels, channelsError, selected, [...unread]]);
      if (key === sideFor) return;
      sideFor = key;
      const joined = (channels || []).filter((c) => c.joined);
      const other = (channels || []).filter((c) => !c.joined);
      const nameInput = h('input', { name: 'name', id: 'chat-new-name', maxlength: '64', required: true, autocomplete: 'off', placeholder: t('chat.create.placeholder') });
      const old = side.querySelector('#chat-new-name');
      if (old) nameInput.value = old.value;
      const oldBurn = side.querySelector('#chat-new-burn');
      side.replaceChildren(...[
        h('h2', { class: 'side-title' }, t('chat.joined')),
        channels === null
          ? h('p', { class: 'muted side-note' }, channelsError ? t('chat.loadFailed', { msg: channelsError }) : t('node.loading'))
          : joined.length === 0
            ? h('p', { class: 'muted side-note', id: 'chat-no-channels' }, t('chat.noChannels'))
            : h('ul', { class: 'chan-list', id: 'chat-joined' }, joined.map(channelItem)),
        other.length > 0 && h('h2', { class: 'side-title' }, t('chat.discover')),
        other.length > 0 && h('ul', { class: 'chan-list', id: 'chat-discover' }, other.map(channelItem)),
        h('form', { class: 'chat-create', id: 'chat-create' },
          h('h2', { class: 'side-title' }, t('chat.create.title')),
          h('label', { class: 'sr-only', for: 'chat-new-name' }, t('chat.create.name')),
          nameInput,
          h('label', { class: 'check' },
            h('input', { type: 'checkbox', name: 'burn', id: 'chat-new-burn', checked: oldBurn ? oldBurn.checked : false }),
            icon('burn'), h('span', {}, t('chat.create.burn'))),
          h('button', { type: 'submit', class: 'btn btn-primary', id: 'chat-create-btn' }, t('chat.create.submit')),
          h('p', { class: 'form-error', role: 'alert' })),
      ].filter(Boolean));
    }

    function settingsPanel(c) {
      const owner = self && c.owner === self;
      return h('form', { class: 'chat-settings', id: 'chat-settings' },
        h('fieldset', {},
          h('legend', {}, t('chat.settings.range')),
          h('p', { class: 'muted small' }, c.burn ? t('chat.settings.rangeBurn') : t('chat.settings.rangeHint')),
          h('div', { class: 'range-fields' },
            h('label', {}, t('chat.settings.days'),
              h('input', { type: 'number', name: 'days', id: 'chat-range-days', min: '0', step: '1', value: String(c.range?.days || 0) })),
            h('label', {}, t('chat.settings.count'),
              h('input', { type: 'number', name: 'count', id: 'chat-range-count', min: '0', step: '1', value: String(c.range?.count || 0) })))),
        h('fieldset', {},
          h('legend', {}, t('chat.settings.burn')),
          owner
            ? h('label', { class: 'check switch' },
              h('input', { type: 'checkbox', name: 'burn', id: 'chat-burn', role: 'switch', checked: c.burn }),
              h('span', {}, t('chat.settings.burnOn')))
            : h('p', { class: 'muted small' }, t(c.burn ? 'chat.settings.burnIsOn' : 'chat.settings.burnIsOff'), ' ',
              t('chat.settings.ownerOnly', { name: c.owner_name || shortID(c.owner || '') }))),
        h('div', { class: 'form-actions' },
          h('button', { type: 'submit', class: 'btn btn-primary', id: 'chat-settings-save' }, t('chat.settings.save')),
          h('button', { type: 'button', class: 'btn btn-quiet', dataset: { act: 'settings' } }, t('chat.settings.cancel'))),
        h('p', { class: 'form-error', role: 'alert' }));
    }

    function renderMain() {
      const c = current();
      const key = c ? JSON.stringify([c, settingsOpen, self]) : `none ${channels === null}`;
      if (key === mainFor) return;
      mainFor = key;
      if (!c) {
        main.replaceChildren(h('div', { class: 'empty chat-empty', id: 'chat-pick' },
          h('div', { class: 'empty-icon', 'aria-hidden': 'true' }, icon('chat')),
          h('h2', {}, t('chat.pick.title')),
          h('p', {}, t('chat.pick.body'))));
        return;
      }
      const owner = c.owner_name || shortID(c.owner || '');
      const header = h('header', { class: 'chat-head' },
        h('div', { class: 'chat-head-text' },
          h('h2', { id: 'chat-channel-name' },
            h('span', { class: 'chan-hash', 'aria-hidden': 'true' }, '#'), c.name,
            c.burn && h('span', { class: 'burn-badge', id: 'chat-burn-badge', title: t('chat.burnHint') }, icon('burn'), t('chat.burn'))),
          h('p', { class: 'muted small' },
            t('chat.ownedBy', { name: self && c.owner === self ? t('chat.you') : owner }), ' · ',
            plural('chat.members', c.members || 0))),
        c.joined && h('div', { class: 'chat-head-actions' },
          h('button', { type: 'button', class: 'btn btn-quiet', id: 'chat-settings-btn', dataset: { act: 'settings' }, 'aria-expanded': String(settingsOpen) }, '⚙ ', t('chat.settings.title')),
          h('button', { type: 'button', class: 'btn btn-quiet', id: 'chat-leave', dataset: { act: 'leave' } }, t('chat.leave'))));
      if (!c.joined) {
        main.replaceChildren(header, h('div', { class: 'empty chat-empty', id: 'chat-not-joined' },
          h('div', { class: 'empty-icon', 'aria-hidden': 'true' }, '#'),
          h('h2', {}, t('chat.notJoined.title', { name: c.name })),
          h('p', {}, t('chat.notJoined.body')),
          h('button', { type: 'button', class: 'btn btn-primary', id: 'chat-join', dataset: { act: 'join', id: c.id } }, t('chat.join'))));
        return;
      }
      input.placeholder = t('chat.composer.placeholder', { name: c.name });
      input.setAttribute('aria-label', t('chat.composer.label'));
      send.textContent = t('chat.send');
      composerHint.replaceChildren(...(c.burn ? [icon('burn'), ' ', t('chat.composer.burnHint')] : [t('chat.composer.hint')]));
      // The channel's header changes as members come and go: the log keeps
      // its place, and a message being typed the focus and its caret
      // (moving an element out of the page loses both).
      const typing = document.activeElement === input;
      const { selectionStart, selectionEnd } = input;
      const { scrollTop } = log;
      main.replaceChildren(header, settingsOpen ? settingsPanel(c) : '', log, composer);
      log.scrollTop = scrollTop;
      if (typing) {
        input.focus({ preventScroll: true });
        input.setSelectionRange(selectionStart, selectionEnd);
      }
      renderOlder();
    }

    function renderOlder() {
      older.hidden = !(msgState === 'ready' && hasOlder);
      older.disabled = loadingOlder;
      older.textContent = t(loadingOlder ? 'node.loading' : 'chat.older');
    }

    function messageRow(m) {
      const [time, full] = formatTime(m.time);
      const cls = ['msg'];
      if (m.mine) cls.push('mine');
      if (m.retracted) cls.push('retracted');
      if (m.marked) cls.push('marked');
      if (m.burn && !m.retracted) cls.push('burn');
      const node = m.author_name || shortID(m.author || '');
      // A guest's message is the node's word for what its guest said: show
      // the guest's chosen name only beside the node that vouches for it.
      const author = m.guest ? t('chat.guestOf', { name: m.guest, node }) : node;
      if (m.guest) cls.push('guest');
      return h('li', { class: cls.join(' '), dataset: { id: m.id } },
        h('div', { class: 'msg-head' },
          h('span', { class: 'msg-author', title: m.author }, author),
          m.mine && h('span', { class: 'badge self' }, t('chat.you')),
          m.guest && h('span', { class: 'badge guest' }, t('chat.guest')),
          h('time', { class: 'msg-time', datetime: m.time, title: full }, time),
          m.marked && icon('pin', t('chat.marked'), 'msg-pin'),
          m.burn && !m.retracted && icon('burn', t('chat.burnHint'), 'msg-burn')),
        m.retracted
          ? h('p', { class: 'msg-text msg-retracted' }, t('chat.retracted'))
          : h('p', { class: 'msg-text' }, m.text),
        h('div', { class: 'msg-actions' },
          h('button', { type: 'button', class: 'msg-act', dataset: { act: 'mark' }, 'aria-pressed': String(!!m.marked) },
            m.marked ? t('chat.unmark') : t('chat.mark')),
          m.mine && !m.retracted && !m.burn && h('button', { type: 'button', class: 'msg-act danger', dataset: { act: 'retract' } }, t('chat.retract'))),
        m.burn && !m.retracted && h('div', { class: 'burn-bar', 'aria-hidden': 'true' }));
    }

    function clearRows() {
      for (const { el } of rows.values()) observer.unobserve(el);
      rows.clear();
      burn.clear();
      list.replaceChildren();
    }

    // renderMessages reconciles the list with msgs, re-creating only the
    // rows whose message changed.
    function renderMessages() {
      if (msgState === 'loading') placeholder.textContent = t('node.loading');
      else if (msgState === 'error') placeholder.textContent = t('chat.loadFailed', { msg: msgError });
      else if (msgState === 'ready' && msgs.length === 0) placeholder.textContent = t('chat.noMessages');
      else placeholder.textContent = '';
      placeholder.hidden = placeholder.textContent === '';
      placeholder.dataset.state = msgState;

      const keep = new Set();
      const els = msgs.map((m) => {
        keep.add(m.id);
        const key = JSON.stringify([m.text, m.retracted, m.marked, m.burn, m.author_name, m.time, chatFilter.version]);
        let row = rows.get(m.id);
        if (!row || row.key !== key) {
          if (row) observer.unobserve(row.el);
          row = { key, el: messageRow(m) };
          if (chatFilter.hides(m)) { // a word filter plugin hides it
            row.el.hidden = true;
            row.el.classList.add('plugin-hidden');
          }
          rows.set(m.id, row);
          if (m.burn && !m.retracted) {
            if (!burn.has(m.id)) burn.set(m.id, { seen: 0, visible: false, reading: false });
            const b = burn.get(m.id);
            row.el.style.setProperty('--burn-left', String(Math.max(0, 1 - b.seen / BURN_AFTER)));
            observer.observe(row.el);
          }
        }
        return row.el;
      });
      for (const [id, row] of rows) {
        if (!keep.has(id)) {
          observer.unobserve(row.el);
          rows.delete(id);
          burn.delete(id);
        }
      }
      // Only touch the DOM where the order changed, so scrolling and
      // hover states survive.
      let i = 0;
      for (; i < els.length; i++) {
        if (list.children[i] !== els[i]) break;
      }
      if (i < els.length || list.children.length !== els.length) {
        while (list.children.length > i) list.lastChild.remove();
        list.append(...els.slice(i));
      }
      renderOlder();
    }

    function fitInput() {
      input.style.height = 'auto';
      input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
    }

    function renderAll() {
      title.textContent = t('chat.title');
      mainFor = null;
      sideFor = null;
      // Strings changed: build every row anew.
      for (const row of rows.values()) row.key = '';
      renderSide();
      renderMain();
      renderMessages();
    }

    // ---- wiring ----

    side.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-act]');
      if (!b) return;
      if (b.dataset.act === 'select') select(b.dataset.id);
      else if (b.dataset.act === 'join') join(b.dataset.id);
    });
    side.addEventListener('submit', (e) => {
      e.preventDefault();
      create(e.target);
    });
    main.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-act]');
      if (!b) return;
      const c = current();
      switch (b.dataset.act) {
        case 'settings':
          settingsOpen = !settingsOpen;
          renderMain();
          break;
        case 'leave':
          if (c) leave(c.id);
          break;
        case 'join':
          join(b.dataset.id);
          break;
        case 'mark':
        case 'retract':
          act(b);
          break;
        default:
      }
    });
    main.addEventListener('submit', (e) => {
      e.preventDefault();
      if (e.target === composer) post();
      else if (e.target.id === 'chat-settings') saveSettings(e.target);
    });
    older.addEventListener('click', loadOlder);
    // Keep the newest message in view when the log changes size (window
    // resized, composer grew) while it was scrolled to the bottom.
    let pinned = true;
    log.addEventListener('scroll', () => {
      pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
    });
    const resize = new ResizeObserver(() => {
      if (pinned) log.scrollTop = log.scrollHeight;
    });
    resize.observe(log);
    input.addEventListener('keydown', (e) => {
      // Enter sends, Shift+Enter is a new line; not while an IME is
      // composing (Enter then picks the characters).
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        post();
      }
    });
    input.addEventListener('input', () => {
      fitInput();
      const n = enc.encode(input.value).length;
      composerError.textContent = n > MAX_TEXT ? t('chat.tooLong', { n, max: MAX_TEXT }) : '';
    });

    renderAll();
    getJSON('api/node').then((n) => {
      self = n.id;
      mainFor = null;
      renderMain();
    }).catch(() => {});
    reload();
    burnTimer = setInterval(tick, 200);

    const offChat = events.on('chat', apply);
    const offFilter = chatFilter.onChange(() => renderMessages());
    const offDirectory = events.on('directory', directoryChanged);
    // After a reconnect, events may have been missed: fetch again.
    let wasOpen = events.state === 'open';
    const offStatus = events.onStatus((state) => {
      if (state === 'open' && !wasOpen) reload();
      wasOpen = state === 'open';
    });
    const offLang = onLang(renderAll);
    return () => {
      offChat();
      offFilter();
      offDirectory();
      clearTimeout(dirTimer);
      offStatus();
      offLang();
      clearInterval(burnTimer);
      observer.disconnect();
      resize.disconnect();
      loadToken++;
    };
  },
};
