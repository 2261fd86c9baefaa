// catnest plugin runtime: runs inside the sandboxed frame, never in the
// page. It waits for the page's init message (the plugin's code and a
// MessagePort), loads the code as a module, makes its default export with
// the API object and calls its hooks on events. Everything here is a
// convenience for plugin authors, not a security boundary: the page
// checks every call that comes over the port.
const pending = new Map();
let port = null;
let plugin = null;
let seq = 0;

function call(method, args) {
  return new Promise((resolve, reject) => {
    if (!port) {
      reject(new Error('not started'));
      return;
    }
    const id = ++seq;
    pending.set(id, { resolve, reject });
    port.postMessage({ type: 'call', id, method, args: args === undefined ? null : args });
  });
}

const api = {
  info: null,
  chat: {
    post: (channel, text) => call('chat.post', { channel, text }),
    channels: () => call('chat.channels'),
    setFilter: (words) => call('chat.setFilter', { words }),
  },
  player: {
    current: () => call('player.current'),
    play: () => call('player.play'),
    pause: () => call('player.pause'),
    next: () => call('player.next'),
    prev: () => call('player.prev'),
  },
  storage: {
    all: () => call('storage.all'),
    get: async (key) => {
      const all = await call('storage.all');
      return Object.prototype.hasOwnProperty.call(all, key) ? all[key] : null;
    },
    set: (key, value) => call('storage.set', { key, value: String(value) }),
    remove: (key) => call('storage.set', { key, value: '' }),
  },
  ui: {
    showPanel: (opts) => call('ui.showPanel', opts || {}),
    hidePanel: () => call('ui.hidePanel'),
    setButton: (opts) => call('ui.setButton', opts || {}),
    removeButton: () => call('ui.removeButton'),
  },
  log: (...args) => {
    if (port) port.postMessage({ type: 'log', text: args.map(String).join(' ').slice(0, 2000) });
  },
};

// hooks maps the page's event names to the plugin's methods.
const hooks = {
  chat: 'onChatMessage',
  track: 'onTrackChange',
  lyrics: 'onLyricsLine',
  peerJoin: 'onPeerJoin',
  peerLeave: 'onPeerLeave',
  button: 'onToolbarClick',
  stop: 'stop',
};

async function hook(name, data) {
  const fn = plugin && plugin[name];
  if (typeof fn !== 'function') return;
  try {
    await fn.call(plugin, data);
  } catch (err) {
    api.log(`${name} failed: ${err && err.message ? err.message : err}`);
  }
}

function onPort(msg) {
  if (!msg || typeof msg !== 'object') return;
  if (msg.type === 'reply') {
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.value);
    else p.reject(new Error(msg.error));
  } else if (msg.type === 'ping') {
    // The host's watchdog: a plugin busy for good cannot answer.
    port.postMessage({ type: 'pong' });
  } else if (msg.type === 'event' && hooks[msg.name]) {
    hook(hooks[msg.name], msg.data);
  }
}

addEventListener('message', async (e) => {
  if (port || e.source !== parent || !e.data || e.data.type !== 'catnest-init' || !e.ports[0]) return;
  port = e.ports[0];
  port.onmessage = (m) => onPort(m.data);
  api.info = Object.freeze(e.data.info || {});
  Object.freeze(api.chat);
  Object.freeze(api.player);
  Object.freeze(api.storage);
  Object.freeze(api.ui);
  Object.freeze(api);
  globalThis.catnest = api;
  document.documentElement.lang = api.info.lang || 'en';
  try {
    const url = URL.createObjectURL(new Blob([e.data.code], { type: 'text/javascript' }));
    let mod;
    try {
      mod = await import(url);
    } finally {
      URL.revokeObjectURL(url);
    }
    const Plugin = mod.default;
    plugin = typeof Plugin === 'function' ? new Plugin(api) : Plugin;
    if (!plugin || typeof plugin !== 'object') throw new Error('the default export is not a class');
    await hook('start', api);
    port.postMessage({ type: 'ready' });
  } catch (err) {
    port.postMessage({ type: 'error', text: String(err && err.message ? err.message : err).slice(0, 500) });
  }
});
