// The plugin host: runs every enabled plugin in a sandboxed iframe for as
// long as the page is open, whatever view is shown, and is the only way a
// plugin reaches anything. Each frame (sandbox="allow-scripts", never
// allow-same-origin) loads api/plugins/frame, whose CSP allows no network;
// the host posts it the plugin's code and a MessagePort, and answers every
// call on that port after checking it against the permissions the user
// granted, at a bounded rate. Calls that change the node (chat posts,
// storage) carry the plugin's capability, which the node checks again.
//
// A plugin that floods the bridge, whose frame navigates away, or that
// stops answering the host's pings (it loops) is stopped. Panels live in
// a dock below the view; toolbar buttons in the header. Plugins with chat-filter hide chat messages containing their
// words (chatFilter, read by the Chat view).
import { h, countRead, freshness } from './dom.js';
import { t, lang, onLangChange } from './i18n/index.js';
import { getJSON, failure } from './api.js';
import { player } from './player.js';

const FRAME = 'api/plugins/frame';
// Bridge rate: a bucket of BURST calls refilled at RATE per second; a
// plugin that makes STRIKES calls over it is stopped.
const RATE = 20;
const BURST = 40;
const STRIKES = 200;
const MAX_TEXT = 16384;
// Watchdog: every PING ms the host pings each frame; one that has said
// nothing for HUNG ms after a ping (an endless loop, say) is stopped, and
// removing its frame ends the process the browser runs it in. Chromium
// runs the page in a process of its own but all plugin frames in one
// process (they share a site), so one plugin's loop silences them all:
// all are stopped, which ends the loop, and after RESTART ms the
// installed ones start again, once; whichever loops again takes them all
// down for good, and the user disables it by its name in the toast.
const PING = 5000;
const HUNG = 15000;
const RESTART = 3000;
const MAX_WORDS = 200;

const running = new Map(); // plugin id → Running
const hangs = new Map(); // plugin id → times stopped for not answering
let hostCtx = null; // startPlugins' ctx, to restart plugins
const statusFns = new Set();
let started = false;

// chatFilter is what the Chat view asks: hides(message) and onChange.
export const chatFilter = {
  version: 0,
  fns: new Set(),
  hides(m) {
    if (!m || m.retracted || typeof m.text !== 'string') return false;
    const text = m.text.toLowerCase();
    for (const r of running.values()) {
      for (const w of r.words) if (text.includes(w)) return true;
    }
    return false;
  },
  onChange(fn) {
    this.fns.add(fn);
    return () => this.fns.delete(fn);
  },
  changed() {
    this.version++;
    for (const fn of this.fns) fn();
  },
};

// states reports each running plugin: {id: {state, error}}.
export function states() {
  const out = {};
  for (const [id, r] of running) out[id] = { state: r.state, error: r.error };
  return out;
}

// onStatus calls fn when a plugin starts, stops or fails.
export function onStatus(fn) {
  statusFns.add(fn);
  return () => statusFns.delete(fn);
}

function statusChanged() {
  for (const fn of statusFns) fn();
}

function dock() {
  let d = document.getElementById('plugin-dock');
  if (!d) {
    d = h('section', { id: 'plugin-dock', class: 'plugin-dock', 'aria-label': t('plugins.dock') });
    document.querySelector('footer').before(d);
  }
  return d;
}

function toolbar() {
  let b = document.getElementById('plugin-toolbar');
  if (!b) {
    b = h('div', { id: 'plugin-toolbar', class: 'plugin-toolbar' });
    document.getElementById('conn').before(b);
  }
  return b;
}

// str checks a string argument: at most max characters.
function str(v, max, what) {
  if (typeof v !== 'string' || v.length > max) throw new Error(`${what} must be a string of at most ${max} characters`);
  return v;
}

class Running {
  // p: {id, name, granted, capability}; code: the plugin's source.
  constructor(p, code, events) {
    this.p = p;
    this.id = p.id;
    this.granted = new Set(p.granted || []);
    this.words = [];
    this.state = 'starting';
    this.error = '';
    this.tokens = BURST;
    this.last = performance.now();
    this.strikes = 0;
    this.loads = 0;
    this.heard = performance.now(); // when the frame last said anything
    this.pinged = 0; // when the unanswered ping went, or 0
    this.watchdog = setInterval(() => this.watch(), PING);
    this.events = events;
    this.frame = h('iframe', {
      class: 'plugin-frame',
      sandbox: 'allow-scripts',
      src: FRAME,
      title: p.name,
      referrerpolicy: 'no-referrer',
      dataset: { plugin: p.id },
    });
    this.frame.setAttribute('allow', '');
    this.panel = h('section', { class: 'plugin-panel card', hidden: true, dataset: { plugin: p.id } },
      h('header', { class: 'plugin-panel-head' }, h('span', { class: 'plugin-panel-title' }, p.name)),
      this.frame);
    this.frame.addEventListener('load', () => this.onLoad(code));
    dock().append(this.panel);
  }

  has(perm) {
    return this.granted.has(perm);
  }

  onLoad(code) {
    this.loads++;
    if (this.loads > 1) {
      // The frame navigated: whatever it shows now is not the plugin.
      this.stop(t('plugins.err.navigated'));
      return;
    }
    const ch = new MessageChannel();
    this.port = ch.port1;
    this.port.onmessage = (e) => this.onMessage(e.data);
    this.pinged = 0; // the watchdog starts over with the port
    const info = { id: this.id, name: this.p.name, version: this.p.version, permissions: [...this.granted], lang: lang() };
    this.frame.contentWindow.postMessage({ type: 'catnest-init', code, info }, '*', [ch.port2]);
  }

  // watch pings the frame, and stops the plugin if the last ping has
  // gone unanswered for HUNG ms. Timers of a hidden tab run late; a late
  // tick still finds the answer, which comes without timers.
  watch() {
    const now = performance.now();
    if (this.pinged && this.heard < this.pinged) {
      if (now - this.pinged > HUNG) hung(now);
      return;
    }
    if (!this.port) {
      // Not loaded yet: a frame that never loads is stopped too.
      if (!this.pinged) this.pinged = now;
      return;
    }
    this.pinged = now;
    this.send({ type: 'ping' });
  }

  send(msg) {
    if (this.port && this.state !== 'stopped') this.port.postMessage(msg);
  }

  event(name, data) {
    if (this.state === 'running') this.send({ type: 'event', name, data });
  }

  // allow takes a token from the bucket; a plugin far over the rate is
  // stopped.
  allow() {
    const now = performance.now();
    this.tokens = Math.min(BURST, this.tokens + ((now - this.last) / 1000) * RATE);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    if (++this.strikes >= STRIKES) this.stop(t('plugins.err.flood'));
    return false;
  }

  onMessage(msg) {
    if (this.state === 'stopped' || !msg || typeof msg !== 'object') return;
    this.heard = performance.now();
    if (!this.allow()) {
      if (msg.type === 'call' && this.state !== 'stopped') this.send({ type: 'reply', id: msg.id, ok: false, error: 'rate limited' });
      return;
    }
    switch (msg.type) {
      case 'ready':
        this.state = 'running';
        statusChanged();
        break;
      case 'error':
        this.error = String(msg.text || '').slice(0, 500);
        this.state = 'failed';
        statusChanged();
        break;
      case 'pong':
        break;
      case 'log':
        console.info(`[plugin ${this.p.name}]`, String(msg.text || '').slice(0, 2000));
        break;
      case 'call':
        this.call(msg);
        break;
      default:
    }
  }

  async call(msg) {
    const id = msg.id;
    try {
      const value = await this.handle(String(msg.method), msg.args || {});
      this.send({ type: 'reply', id, ok: true, value: value === undefined ? null : value });
    } catch (err) {
      this.send({ type: 'reply', id, ok: false, error: String(err && err.message ? err.message : err) });
    }
  }

  need(perm) {
    if (!this.has(perm)) throw new Error(`permission ${perm} not granted`);
  }

  // api calls the node for the plugin, with its capability.
  async api(method, path, body) {
    const init = { method, headers: { Accept: 'application/json', 'X-Plugin-Capability': this.p.capability || '' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(`api/plugins/${encodeURIComponent(this.id)}/${path}`, init);
    if (!res.ok) throw await failure(res);
    return res.status === 204 ? null : res.json();
  }

  async handle(method, a) {
    const pl = player();
    switch (method) {
      case 'chat.post': {
        this.need('chat-write');
        const m = await this.api('POST', 'chat', { channel: str(a.channel, 64, 'channel'), text: str(a.text, MAX_TEXT, 'text') });
        return { id: m.id, channel: m.channel };
      }
      case 'chat.channels': {
        this.need('chat-read');
        const chs = await getJSON('api/channels');
        let cur = null;
        try {
          cur = localStorage.getItem('catnest.chat.channel');
        } catch {
          // none
        }
        return chs.filter((c) => c.joined).map((c) => ({ id: c.id, name: c.name, current: c.id === cur }));
      }
      case 'chat.setFilter': {
        this.need('chat-filter');
        const words = Array.isArray(a.words) ? a.words : [];
        if (words.length > MAX_WORDS) throw new Error(`at most ${MAX_WORDS} words`);
        this.words = words.map((w) => str(w, 64, 'word').trim().toLowerCase()).filter(Boolean);
        chatFilter.changed();
        return this.words.length;
      }
      case 'player.current':
        this.need('player-read');
        return trackInfo(pl.current());
      case 'player.play':
        this.need('player-control');
        pl.resume();
        return null;
      case 'player.pause':
        this.need('player-control');
        pl.audio.pause();
        return null;
      case 'player.next':
        this.need('player-control');
        pl.next(true);
        return null;
      case 'player.prev':
        this.need('player-control');
        pl.prev();
        return null;
      case 'storage.all':
        this.need('storage');
        return this.api('GET', 'data');
      case 'storage.set': {
        this.need('storage');
        const key = str(a.key, 128, 'key');
        if (!key) throw new Error('empty key');
        const value = str(a.value, 65536, 'value');
        if (value === '') await this.api('DELETE', `data/${encodeURIComponent(key)}`);
        else await this.api('PUT', `data/${encodeURIComponent(key)}`, { value });
        return null;
      }
      case 'ui.showPanel': {
        this.need('ui-panel');
        const height = Math.max(40, Math.min(480, Number(a.height) || 120));
        this.frame.style.height = `${height}px`;
        if (typeof a.title === 'string') this.panel.querySelector('.plugin-panel-title').textContent = a.title.slice(0, 64);
        this.panel.hidden = false;
        return null;
      }
      case 'ui.hidePanel':
        this.need('ui-panel');
        this.panel.hidden = true;
        return null;
      case 'ui.setButton': {
        this.need('ui-panel');
        const label = str(a.label || this.p.name, 24, 'label');
        if (!this.button) {
          this.button = h('button', { type: 'button', class: 'btn btn-quiet btn-small plugin-button', dataset: { plugin: this.id } });
          this.button.addEventListener('click', () => this.event('button', null));
          toolbar().append(this.button);
        }
        this.button.textContent = label;
        this.button.title = typeof a.title === 'string' ? a.title.slice(0, 100) : this.p.name;
        return null;
      }
      case 'ui.removeButton':
        this.need('ui-panel');
        if (this.button) this.button.remove();
        this.button = null;
        return null;
      default:
        throw new Error(`unknown call ${method.slice(0, 40)}`);
    }
  }

  stop(reason) {
    if (this.state === 'stopped') return;
    if (this.port && !reason) this.port.postMessage({ type: 'event', name: 'stop', data: null });
    this.state = 'stopped';
    this.error = reason || '';
    clearInterval(this.watchdog);
    if (this.port) this.port.close();
    this.frame.remove();
    this.panel.remove();
    if (this.button) this.button.remove();
    if (this.words.length) {
      this.words = [];
      chatFilter.changed();
    }
    if (reason) {
      console.warn(`plugin ${this.p.name} stopped: ${reason}`);
      if (this.events && this.events.toast) this.events.toast(t('plugins.stopped', { name: this.p.name, why: reason }));
    }
    statusChanged();
  }
}

// hung stops every plugin silent for HUNG ms (they share the looping
// process: a live frame answers a ping every PING ms), all at once so
// that the process goes, then starts the installed ones again once.
function hung(now) {
  const again = [];
  for (const r of running.values()) {
    if (r.state === 'stopped' || now - r.heard <= HUNG) continue;
    const n = (hangs.get(r.id) || 0) + 1;
    hangs.set(r.id, n);
    r.stop(t('plugins.err.hung'));
    if (n === 1 && !r.id.startsWith('try-')) again.push(r);
  }
  if (!again.length || !hostCtx) return;
  setTimeout(() => {
    for (const r of again) if (running.get(r.id) === r) running.delete(r.id);
    sync(hostCtx);
  }, RESTART);
}

function trackInfo(tr) {
  if (!tr) return null;
  return { id: tr.md5, title: tr.title || tr.name || '', artist: tr.artist || '', album: tr.album || '', duration: tr.duration || 0 };
}

function broadcast(perm, name, data) {
  for (const r of running.values()) {
    if (r.has(perm)) r.event(name, data);
  }
}

// run starts plugin p (installed or tried) with its code, replacing one
// of the same id.
export function run(p, code, ctx) {
  const old = running.get(p.id);
  if (old) old.stop();
  const r = new Running(p, code, ctx);
  running.set(p.id, r);
  statusChanged();
  return r;
}

// stop stops the plugin with this id.
export function stop(id) {
  const r = running.get(id);
  if (!r) return;
  r.stop();
  running.delete(id);
  statusChanged();
}

// sync runs the enabled installed plugins and stops the others (tried
// plugins are left alone). Each event starts one, so they overlap: an
// older list read last would start a plugin disabled meanwhile. Of the
// syncs begun, the newest list read so far wins, and a sync goes on
// starting plugins only while no later one has read its list. Each sync
// counts itself done in data-plugin-syncs on <html>, for tests.
const syncs = freshness();
async function sync(ctx) {
  try {
    await syncOnce(ctx, syncs.begin());
  } finally {
    countRead(document.documentElement, 'pluginSyncs');
  }
}

async function syncOnce(ctx, ticket) {
  let list;
  try {
    list = await getJSON('api/plugins');
  } catch {
    return; // no plugins here, or the node is down: the next event tries again
  }
  if (!ticket.fresh()) return;
  const want = new Map(list.filter((p) => p.enabled).map((p) => [p.id, p]));
  for (const id of [...running.keys()]) {
    if (!id.startsWith('try-') && (!want.has(id) || want.get(id).capability !== running.get(id).p.capability)) stop(id);
  }
  for (const [id, p] of want) {
    if (running.has(id)) continue;
    try {
      const res = await fetch(`api/plugins/${encodeURIComponent(id)}/source`);
      if (!res.ok) continue;
      const code = await res.text();
      if (!ticket.fresh()) return;
      run(p, code, ctx);
    } catch {
      // tried again on the next change
    }
  }
}

// startPlugins starts the host once: it follows the installed plugins and
// feeds them the page's events.
export function startPlugins(events, ctx) {
  if (started) return;
  started = true;
  hostCtx = ctx;
  sync(ctx);
  events.on('plugins', (ev) => {
    if (ev && ev.installed) sync(ctx);
  });
  events.onStatus((st) => {
    if (st === 'open') sync(ctx);
  });
  events.on('chat', (ev) => {
    if (!ev || ev.type !== 'message' || !ev.message) return;
    const m = ev.message;
    broadcast('chat-read', 'chat', { id: m.id, channel: m.channel, author: m.author, author_name: m.author_name, guest: m.guest || '', text: m.text, time: m.time, mine: !!m.mine });
  });
  let peers = null;
  events.on('peers', (list) => {
    const now = new Map((list || []).map((p) => [p.id, { id: p.id, name: p.name }]));
    if (peers) {
      for (const [id, p] of now) if (!peers.has(id)) broadcast('peers', 'peerJoin', p);
      for (const [id, p] of peers) if (!now.has(id)) broadcast('peers', 'peerLeave', p);
    }
    peers = now;
  });
  const pl = player();
  pl.onChange((tr) => broadcast('player-read', 'track', trackInfo(tr)));
  pl.onLyric((line, index) => broadcast('player-read', 'lyrics', line ? { index, t: line.t, text: line.text } : null));
  onLangChange(() => {
    const d = document.getElementById('plugin-dock');
    if (d) d.setAttribute('aria-label', t('plugins.dock'));
  });
}
