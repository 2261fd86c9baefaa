// catnest web UI: header, navigation and the view registry.
import { apply, lang, setLang, onLangChange, t } from './i18n/index.js';
import { getJSON, EventStream } from './api.js';
import { h, shortID } from './dom.js';
import peers from './views/peers.js';
import mesh from './views/mesh.js';
import chat from './views/chat.js';
import files from './views/files.js';
import music from './views/music.js';
import plugins from './views/plugins.js';
import { startPlugins } from './plugins-host.js';
import live from './views/live.js';
import settings from './views/settings.js';
import call from './views/call.js';

// views is the registry of the UI's views, in nav order. A view is a module
// whose default export is {id, title (an i18n key), mount(root, ctx) →
// cleanup}, and optionally available() → Promise<boolean> for a view that
// depends on a service the node may not run. Adding a view is adding it
// here; it gets a nav entry and the route #/id (once available, if it asks).
// ctx is {events, onLang, toast}.
const views = [peers, mesh, chat, files, music, live, call, plugins, settings];

// shown holds the views that are available; the others have no nav entry
// and no route.
const shown = new Set(views.filter((v) => !v.available));

const $ = (sel) => document.querySelector(sel);
// The snapshots the stream sends when it connects (webui feeds).
const events = new EventStream('api/events', ['peers', 'directory', 'live']);
let node = null;

// ---- header: node name and ID ----

function renderNode() {
  const name = $('#node-name');
  const chip = $('#node-id');
  if (!node) return;
  name.textContent = node.name || t('peers.unnamed');
  name.removeAttribute('data-i18n');
  chip.textContent = shortID(node.id);
  chip.title = t('node.copyId', { id: node.id });
  chip.dataset.id = node.id;
  chip.hidden = false;
  $('#version').textContent = t('footer.version', { version: node.version || '' });
  document.title = `${node.name || shortID(node.id)} · catnest`;
}

async function loadNode() {
  try {
    node = await getJSON('api/node');
    renderNode();
  } catch (err) {
    toast(t('node.error', { msg: err.message }));
  }
}

let toastTimer = 0;
function toast(msg) {
  const el = $('#toast');
  el.textContent = msg;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 2500);
}

async function copyID() {
  const chip = $('#node-id');
  const id = chip.dataset.id;
  if (!id) return;
  try {
    await navigator.clipboard.writeText(id);
    toast(t('node.copied'));
  } catch {
    // No clipboard (not a secure context): select the full ID instead, so
    // the user can copy it by hand.
    chip.textContent = id;
    getSelection().selectAllChildren(chip);
    toast(t('node.copyFailed'));
  }
}

// ---- connection indicator ----

function renderConn(state) {
  const el = $('#conn');
  el.dataset.state = state;
  $('#conn-text').textContent = t(state === 'open' ? 'conn.live' : 'conn.connecting');
  $('#offline').hidden = state === 'open';
}

// ---- language switch ----

function renderLang() {
  for (const b of document.querySelectorAll('#lang button')) {
    b.setAttribute('aria-pressed', String(b.dataset.lang === lang()));
  }
}

// ---- navigation ----

let current = null; // {view, cleanup}

function route() {
  const id = location.hash.replace(/^#\/?/, '');
  const view = views.find((v) => v.id === id && shown.has(v)) || views.find((v) => shown.has(v));
  if (current && current.view === view) return;
  if (current) current.cleanup();
  const root = $('#view');
  root.replaceChildren();
  // The counts of reads (countRead in dom.js) are the mounted view's:
  // Files and Mesh both count readDirectory.
  for (const k of Object.keys(root.dataset)) if (k.startsWith('read')) delete root.dataset[k];
  root.dataset.view = view.id;
  current = { view, cleanup: view.mount(root, { events, onLang: onLangChange, toast }) || (() => {}) };
  renderNav();
}

// probe asks the views that may be unavailable whether they are, and
// updates the nav and the route. A failed probe (node unreachable) changes
// nothing; it runs again when the stream reconnects.
let probing = 0; // probes under way: one at start and one per reconnect
async function probe() {
  probing++;
  document.documentElement.dataset.probed = 'false';
  for (const v of views) {
    if (!v.available) continue;
    let ok;
    try {
      ok = await v.available();
    } catch {
      continue;
    }
    if (ok === shown.has(v)) continue;
    if (ok) shown.add(v);
    else shown.delete(v);
    renderNav();
    route();
  }
  // Tests wait for this before they check which views are offered, or
  // before they count a view's GETs (a probe's GET is not the view's).
  probing--;
  if (probing === 0) document.documentElement.dataset.probed = 'true';
}

// navLinks keeps each view's nav link. The nav is drawn again whenever a
// probe finds a view, the route or the language changes, which can fall
// between the press and the release of a user's click: a link replaced
// then takes the click with it, so the links stay the same elements and
// only those that come or go are moved.
const navLinks = new Map();

function renderNav() {
  const links = views.filter((v) => shown.has(v)).map((v) => {
    let a = navLinks.get(v);
    if (!a) {
      a = h('a', { href: `#/${v.id}`, class: 'nav-link', dataset: { view: v.id } });
      navLinks.set(v, a);
    }
    const title = t(v.title);
    if (a.textContent !== title) a.textContent = title;
    if (current && current.view === v) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
    return a;
  });
  const nav = $('#nav');
  for (const a of [...nav.children]) {
    if (!links.includes(a)) a.remove();
  }
  links.forEach((a, i) => {
    if (nav.children[i] !== a) nav.insertBefore(a, nav.children[i] || null);
  });
}

// ---- start ----

function start() {
  apply();
  renderLang();
  renderConn(events.state);
  onLangChange(() => {
    apply();
    renderLang();
    renderNav();
    renderNode();
    renderConn(events.state);
  });
  $('#lang').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-lang]');
    if (b) setLang(b.dataset.lang);
  });
  $('#node-id').addEventListener('click', copyID);
  events.onStatus((state) => {
    renderConn(state);
    if (state === 'open') { // the node may have restarted, been renamed or changed its services
      loadNode();
      probe();
    }
  });
  addEventListener('hashchange', route);
  route();
  loadNode();
  probe();
  startPlugins(events, { toast });
}

start();
