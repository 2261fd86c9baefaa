// The settings view: what this node lets scripts do. It shows the API key,
// which scripts and `catnest chat` send to reach the node's API without a
// browser, with curl examples. GET api/apikey answers only this page (see
// the webui package doc); the key stays hidden until the user asks.
import { h } from '../dom.js';
import { t } from '../i18n/index.js';
import { getJSON } from '../api.js';

export default {
  id: 'settings',
  title: 'nav.settings',

  // available says whether the node has an API key to show.
  async available() {
    const res = await fetch('api/apikey', { headers: { Accept: 'application/json' } });
    return res.status !== 404;
  },

  mount(root, { onLang, toast }) {
    let key = null; // null until loaded
    let header = 'X-API-Key';
    let error = '';
    let shown = false;

    const render = () => {
      const value = h('code', { class: 'apikey-value', id: 'apikey-value' },
        key === null ? t('node.loading') : shown ? key : '•'.repeat(key.length));
      const origin = location.origin;
      const k = shown && key ? key : 'KEY';
      const example = [
        `curl -H "${header}: ${k}" ${origin}/api/channels`,
        `curl -H "${header}: ${k}" -d '{"text":"hi"}' ${origin}/api/channels/CHANNEL_ID/messages`,
      ].join('\n');
      root.replaceChildren(
        h('div', { class: 'view-head' }, h('h1', {}, t('settings.title'))),
        h('section', { class: 'card settings-card', id: 'settings-apikey' },
          h('h2', {}, t('settings.apiKey.title')),
          h('p', {}, t('settings.apiKey.body', { header })),
          error
            ? h('p', { class: 'form-error', role: 'alert' }, t('settings.apiKey.error', { msg: error }))
            : h('div', { class: 'apikey-row' }, value,
              h('button', { type: 'button', class: 'btn btn-small', id: 'apikey-show', disabled: key === null, 'aria-pressed': String(shown) },
                t(shown ? 'settings.apiKey.hide' : 'settings.apiKey.show')),
              h('button', { type: 'button', class: 'btn btn-small', id: 'apikey-copy', disabled: key === null },
                t('settings.apiKey.copy'))),
          h('p', { class: 'muted small' }, t('settings.apiKey.file')),
          h('p', { class: 'small' }, t('settings.apiKey.example')),
          h('pre', { class: 'example', id: 'apikey-example' }, example)));
    };

    async function copy() {
      if (!key) return;
      try {
        await navigator.clipboard.writeText(key);
        toast(t('settings.apiKey.copied'));
      } catch {
        // No clipboard (not a secure context): show and select the key,
        // so the user can copy it by hand.
        shown = true;
        render();
        getSelection().selectAllChildren(root.querySelector('#apikey-value'));
        toast(t('settings.apiKey.copyFailed'));
      }
    }

    root.addEventListener('click', (e) => {
      const b = e.target.closest('button');
      if (!b) return;
      if (b.id === 'apikey-show') {
        shown = !shown;
        render();
      } else if (b.id === 'apikey-copy') {
        copy();
      }
    });

    render();
    getJSON('api/apikey').then((got) => {
      key = got.key;
      header = got.header || header;
      error = '';
      render();
    }).catch((err) => {
      error = err.message;
      render();
    });
    const offLang = onLang(render);
    return () => {
      offLang();
      shown = false;
    };
  },
};
