// The Plugins view: the market (every plugin online nodes publish, and
// those seen before, with search), the installed plugins (enable,
// disable, update, uninstall), and an editor that opens on a template,
// tries a plugin in the sandbox without publishing it, and publishes it.
// Installing or trying asks the user which permissions to grant.
import { h, shortID, countRead, freshness } from '../dom.js';
import { t } from '../i18n/index.js';
import { getJSON, sendJSON, served } from '../api.js';
import { editor } from '../highlight.js';
import { run, stop, states, onStatus } from '../plugins-host.js';

const TEMPLATE = `// ==CatnestPlugin==
// @name        Hello
// @description Says hello when a peer joins, and counts the messages.
// @version     1.0.0
// @permissions chat-read peers ui-panel
// ==/CatnestPlugin==

// A plugin is this module's default export: a class made with the API
// object (also globalThis.catnest). Its hooks are called on events.
export default class Hello {
  constructor(api) {
    this.api = api;
    this.count = 0;
  }

  // start runs once the plugin is loaded.
  async start() {
    document.body.textContent = 'Hello from ' + this.api.info.name;
    await this.api.ui.showPanel({ height: 60 });
  }

  onChatMessage(msg) {
    this.count++;
    document.body.textContent = this.count + ' messages, last from ' + msg.author_name;
  }

  onPeerJoin(peer) {
    document.body.textContent = 'Hello, ' + peer.name + '!';
  }

  stop() {}
}
`;

const draftKey = 'catnest.plugins.draft';
// tryID is the plugin the editor runs, which goes on across views.
let tryID = null;

function permList(perms, granted) {
  return h('ul', { class: 'perm-list' }, ...(perms || []).map((p) => h('li', {
    class: `badge perm${granted && !granted.includes(p) ? ' perm-refused' : ''}`,
    title: t(`plugins.perm.${p}`),
    dataset: { perm: p },
  }, p)));
}

export default {
  id: 'plugins',
  title: 'nav.plugins',

  available: () => served('api/plugins'),

  mount(root, { events, toast }) {
    let tab = 'market';
    let market = [];
    let installed = [];
    let query = '';

    let alive = true;

    const tabs = h('div', { class: 'tabs', role: 'tablist', id: 'plugins-tabs' });
    const body = h('div', { id: 'plugins-body' });
    const dialog = h('dialog', { id: 'plugin-grant', class: 'dialog' });
    root.replaceChildren(h('div', { class: 'view-head' }, h('h1', {}, t('plugins.title'))), tabs, body, dialog);

    let draft = TEMPLATE;
    try {
      draft = localStorage.getItem(draftKey) || TEMPLATE;
    } catch {
      // the template
    }
    const ed = editor({ id: 'plugin-editor', value: draft, label: t('plugins.editor.label') });
    ed.textarea.addEventListener('input', () => {
      try {
        localStorage.setItem(draftKey, ed.get());
      } catch {
        // not kept
      }
    });
    const editorError = h('p', { class: 'form-error', id: 'plugin-editor-error', role: 'alert' });
    const editorNote = h('p', { class: 'muted', id: 'plugin-editor-note', role: 'status' });

    // grant asks which permissions to grant; it resolves to the list, or
    // null when the user cancels. had: those granted before (an update).
    function grant(name, perms, had) {
      return new Promise((resolve) => {
        const boxes = perms.map((p) => h('input', { type: 'checkbox', checked: true, value: p, id: `grant-${p}` }));
        dialog.replaceChildren(h('form', { method: 'dialog', class: 'grant-form' },
          h('h2', {}, t('plugins.grant.title', { name })),
          h('p', { class: 'muted' }, perms.length ? t('plugins.grant.body') : t('plugins.grant.none')),
          h('ul', { class: 'grant-list' }, ...perms.map((p, i) => h('li', {},
            h('label', { for: `grant-${p}` }, boxes[i], ' ', h('code', {}, p), ' — ', t(`plugins.perm.${p}`),
              had && !had.includes(p) ? h('span', { class: 'badge perm-new' }, t('plugins.grant.new')) : null)))),
          h('div', { class: 'row-actions' },
            h('button', { type: 'submit', class: 'btn btn-primary', id: 'plugin-grant-ok', value: 'ok' }, t('plugins.grant.ok')),
            h('button', { type: 'submit', class: 'btn btn-quiet', id: 'plugin-grant-cancel', value: 'cancel' }, t('plugins.grant.cancel')))));
        dialog.onclose = () => resolve(dialog.returnValue === 'ok' ? boxes.filter((b) => b.checked).map((b) => b.value) : null);
        dialog.returnValue = '';
        dialog.showModal();
      });
    }

    // reader returns the function that reads the list of tab "of" from
    // path() and gives it to set; what counts its reads (countRead).
    // Events and the search start reads while one is on its way, and the
    // older answer may come last (another search's, or the list before a
    // change): of the reads begun, only the newest answer read so far is
    // shown.
    function reader(of, what, path, set) {
      const fresh = freshness();
      return async () => {
        const ticket = fresh.begin();
        try {
          const got = await getJSON(path());
          if (!ticket.fresh()) return;
          set(got);
        } catch (err) {
          toast(t('plugins.err.load', { msg: err.message }));
        } finally {
          countRead(root, what);
        }
        if (alive && tab === of) renderList();
      };
    }
    const loadMarket = reader('market', 'readMarket',
      () => `api/plugins/market${query ? `?q=${encodeURIComponent(query)}` : ''}`, (got) => { market = got; });
    const loadInstalled = reader('installed', 'readInstalled', () => 'api/plugins', (got) => { installed = got; });

    async function install(l) {
      const had = installed.find((p) => p.publisher === l.publisher && p.name === l.name);
      const granted = await grant(l.name, l.permissions, had ? had.granted : null);
      if (!granted) return;
      try {
        await sendJSON('POST', 'api/plugins/install', { id: l.id, grant: granted });
        toast(t('plugins.installed', { name: l.name, version: l.version }));
      } catch (err) {
        toast(t('plugins.err.install', { msg: err.message }));
      }
      loadMarket();
      loadInstalled();
    }

    async function act(p, what) {
      try {
        if (what === 'uninstall') await sendJSON('DELETE', `api/plugins/${p.id}`);
        else await sendJSON('POST', `api/plugins/${p.id}/${what}`);
      } catch (err) {
        toast(err.message);
      }
      loadInstalled();
    }

    function listingRow(l) {
      let action;
      if (l.installed === l.version) action = h('span', { class: 'badge ok' }, t('plugins.isInstalled'));
      else if (l.installed) action = h('button', { type: 'button', class: 'btn btn-primary btn-small', dataset: { act: 'install' } }, t('plugins.update', { version: l.installed }));
      else action = h('button', { type: 'button', class: 'btn btn-primary btn-small', dataset: { act: 'install' } }, t('plugins.install'));
      return h('li', { class: 'plugin-card card', dataset: { id: l.id, name: l.name, publisher: l.publisher } },
        h('div', { class: 'plugin-card-head' },
          h('strong', { class: 'plugin-name' }, l.name), ' ', h('span', { class: 'muted plugin-version' }, l.version),
          h('span', { class: `badge ${l.online ? 'online' : 'offline'}` }, t(l.online ? 'plugins.online' : 'plugins.offline')),
          l.mine && h('span', { class: 'badge self' }, t('plugins.mine'))),
        h('p', { class: 'plugin-desc' }, l.description),
        h('p', { class: 'muted plugin-publisher' }, t('plugins.by', { name: l.publisher_name }), ' ', h('code', { title: l.publisher }, shortID(l.publisher))),
        permList(l.permissions),
        h('div', { class: 'row-actions' }, action));
    }

    function installedRow(p) {
      const st = states()[p.id];
      const state = !p.enabled ? 'disabled' : st ? st.state : 'starting';
      return h('li', { class: 'plugin-card card', dataset: { id: p.id, name: p.name, state } },
        h('div', { class: 'plugin-card-head' },
          h('strong', { class: 'plugin-name' }, p.name), ' ', h('span', { class: 'muted' }, p.version),
          h('span', { class: 'badge plugin-state' }, t(`plugins.state.${state}`))),
        st && st.error ? h('p', { class: 'form-error' }, st.error) : null,
        h('p', { class: 'plugin-desc' }, p.description),
        h('p', { class: 'muted' }, t('plugins.by', { name: p.publisher_name }), ' ', h('code', { title: p.publisher }, shortID(p.publisher))),
        permList(p.permissions, p.granted),
        h('div', { class: 'row-actions' },
          h('button', { type: 'button', class: 'btn btn-small', dataset: { act: p.enabled ? 'disable' : 'enable' } }, t(p.enabled ? 'plugins.disable' : 'plugins.enable')),
          h('button', { type: 'button', class: 'btn btn-quiet btn-small danger', dataset: { act: 'uninstall' } }, t('plugins.uninstall'))));
    }

    function renderList() {
      const list = h('ul', { class: 'plugin-list', id: `plugins-${tab}` });
      const rows = tab === 'market' ? market.map(listingRow) : installed.map(installedRow);
      list.replaceChildren(...rows);
      const empty = rows.length ? null : h('p', { class: 'muted', id: 'plugins-empty' }, t(tab === 'market' ? 'plugins.market.empty' : 'plugins.installed.empty'));
      if (tab === 'market') {
        const search = h('input', { type: 'search', id: 'plugins-search', value: query, placeholder: t('plugins.search'), 'aria-label': t('plugins.search') });
        let timer = 0;
        search.addEventListener('input', () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            query = search.value.trim();
            loadMarket().then(() => {
              const s = document.getElementById('plugins-search');
              if (s) {
                s.focus();
                s.setSelectionRange(s.value.length, s.value.length);
              }
            });
          }, 200);
        });
        body.replaceChildren(search, empty || list);
      } else body.replaceChildren(empty || list);
      list.addEventListener('click', (e) => {
        const b = e.target.closest('button[data-act]');
        const li = b && b.closest('li[data-id]');
        if (!li) return;
        if (tab === 'market') {
          const l = market.find((x) => x.id === li.dataset.id);
          if (l) install(l);
        } else {
          const p = installed.find((x) => x.id === li.dataset.id);
          if (!p) return;
          if (b.dataset.act === 'uninstall' && b.dataset.confirm !== '1') {
            b.dataset.confirm = '1';
            b.textContent = t('plugins.uninstallConfirm');
            return;
          }
          act(p, b.dataset.act);
        }
      });
    }

    function header(src) {
      const m = /\/\/\s*@name\s+(.+)/.exec(src);
      const perms = /\/\/\s*@permissions\s+(.+)/.exec(src);
      return { name: m ? m[1].trim() : '?', permissions: perms ? perms[1].split(/[\s,]+/).filter(Boolean) : [] };
    }

    async function tryIt() {
      editorError.textContent = '';
      const src = ed.get();
      const hd = header(src);
      const granted = await grant(hd.name, hd.permissions, null);
      if (!granted) return;
      try {
        const s = await sendJSON('POST', 'api/plugins/try', { source: src, grant: granted });
        if (tryID) stop(tryID);
        tryID = s.id;
        run({ id: s.id, name: `${s.name} (${t('plugins.editor.trying')})`, version: s.version, granted: s.granted, capability: s.capability }, src, { toast });
        editorNote.textContent = t('plugins.editor.running', { name: s.name });
        renderEditorButtons();
      } catch (err) {
        editorError.textContent = err.message;
      }
    }

    function stopTry() {
      if (tryID) stop(tryID);
      tryID = null;
      editorNote.textContent = '';
      renderEditorButtons();
    }

    async function publish() {
      editorError.textContent = '';
      try {
        const res = await fetch('api/plugins/publish', { method: 'POST', headers: { 'Content-Type': 'text/javascript; charset=utf-8', Accept: 'application/json' }, body: ed.get() });
        const j = await res.json();
        if (!res.ok) throw new Error(j.error || String(res.status));
        editorNote.textContent = t('plugins.editor.published', { name: j.name, version: j.version, id: j.id });
        toast(t('plugins.editor.published', { name: j.name, version: j.version, id: j.id.slice(0, 8) }));
        loadMarket();
      } catch (err) {
        editorError.textContent = err.message;
      }
    }

    const buttons = h('div', { class: 'row-actions' });
    function renderEditorButtons() {
      const b = (id, label, fn, cls = 'btn') => {
        const el = h('button', { type: 'button', class: cls, id }, t(label));
        el.addEventListener('click', fn);
        return el;
      };
      buttons.replaceChildren(
        b('plugin-try', 'plugins.editor.try', tryIt, 'btn'),
        tryID ? b('plugin-stop-try', 'plugins.editor.stop', stopTry, 'btn btn-quiet') : null,
        b('plugin-publish', 'plugins.editor.publish', publish, 'btn btn-primary'),
        b('plugin-template', 'plugins.editor.template', () => ed.set(TEMPLATE), 'btn btn-quiet'));
    }

    function renderEditor() {
      renderEditorButtons();
      body.replaceChildren(h('p', { class: 'muted' }, t('plugins.editor.hint')), ed.el, buttons, editorError, editorNote);
    }

    function renderTabs() {
      tabs.replaceChildren(...['market', 'installed', 'editor'].map((id) => {
        const b = h('button', { type: 'button', role: 'tab', class: 'tab', id: `plugins-tab-${id}`, 'aria-selected': String(tab === id), dataset: { tab: id } }, t(`plugins.tab.${id}`));
        b.addEventListener('click', () => {
          tab = id;
          renderTabs();
          render();
          if (id === 'market') loadMarket();
          if (id === 'installed') loadInstalled();
        });
        return b;
      }));
    }

    function render() {
      if (tab === 'editor') renderEditor();
      else renderList();
    }

    renderTabs();
    render();
    loadMarket();
    loadInstalled();
    const offEvents = events.on('plugins', (ev) => {
      if (ev.market) loadMarket();
      if (ev.installed) loadInstalled();
    });
    const offStatus = onStatus(() => {
      if (tab === 'installed') renderList();
    });
    return () => {
      alive = false;
      offEvents();
      offStatus();
      if (dialog.open) dialog.close();
    };
  },
};
