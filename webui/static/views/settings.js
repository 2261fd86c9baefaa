// The settings view: what this node lets scripts do. It shows the API key,
// which scripts and `catnest chat` send to reach the node's API without a
// browser, with curl examples. GET api/apikey answers only this page (see
// the webui package doc); the key stays hidden until the user asks.
import { h } from '../dom.js';
import { t } from '../i18n/index.js';
import { getJSON, sendJSON, served } from '../api.js';

export default {
  id: 'settings',
  title: 'nav.settings',

  // available says whether the node has an API key to show.
  available: () => served('api/apikey'),

  mount(root, { onLang, toast }) {
    let key = null; // null until loaded
    let header = 'X-API-Key';
    let error = '';
    let shown = false;
    // The Subsonic login: null until loaded, or when this node has none.
    let sub = null;
    let subError = '';
    const subUser = h('input', { id: 'subsonic-user', class: 'input', autocomplete: 'off', spellcheck: 'false' });
    const subPass = h('input', { id: 'subsonic-password', class: 'input', type: 'password', autocomplete: 'new-password' });

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
          h('pre', { class: 'example', id: 'apikey-example' }, example)),
        subsonicCard());
    };

    // subsonicCard sets the user and password Subsonic apps log in with.
    const subsonicCard = () => {
      if (!sub) return '';
      subUser.placeholder = t('settings.subsonic.user');
      subPass.placeholder = t('settings.subsonic.password');
      return h('section', { class: 'card settings-card', id: 'settings-subsonic' },
        h('h2', {}, t('settings.subsonic.title')),
        h('p', {}, t('settings.subsonic.body', { url: location.origin })),
        h('p', { id: 'subsonic-state', class: 'small' },
          sub.user ? t('settings.subsonic.on', { user: sub.user }) : t('settings.subsonic.off')),
        h('form', { id: 'subsonic-form', class: 'apikey-row' },
          h('label', {}, t('settings.subsonic.user'), ' ', subUser),
          h('label', {}, t('settings.subsonic.password'), ' ', subPass),
          h('button', { type: 'submit', class: 'btn btn-primary btn-small', id: 'subsonic-save' }, t('settings.subsonic.save')),
          sub.user ? h('button', { type: 'button', class: 'btn btn-small', id: 'subsonic-off' }, t('settings.subsonic.turnOff')) : null),
        sub.password_set ? h('p', { class: 'muted small' }, t('settings.subsonic.passwordSet')) : null,
        subError ? h('p', { class: 'form-error', role: 'alert', id: 'subsonic-error' }, subError) : null);
    };

    async function saveSubsonic(user, password, done) {
      try {
        sub = await sendJSON('PUT', 'api/subsonic', { user, password });
        subError = '';
        subPass.value = '';
        toast(t(done));
      } catch (err) {
        subError = t('settings.subsonic.error', { msg: err.message });
      }
      render();
    }

    root.addEventListener('submit', (e) => {
      if (e.target.id !== 'subsonic-form') return;
      e.preventDefault();
      const user = subUser.value.trim();
      if (!user || !subPass.value) {
        subError = t('settings.subsonic.need');
        render();
        return;
      }
      saveSubsonic(user, subPass.value, 'settings.subsonic.saved');
    });

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
      } else if (b.id === 'subsonic-off') {
        saveSubsonic('', '', 'settings.subsonic.turnedOff');
      }
    });

    render();
    getJSON('api/subsonic').then((got) => {
      sub = got;
      subUser.value = got.user;
      render();
    }).catch(() => {
      // No Subsonic API on this node: no card.
    });
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
