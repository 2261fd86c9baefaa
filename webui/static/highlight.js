// A small JavaScript highlighter for the plugin editor: it splits source
// into tokens (comments, strings, template literals, regular expressions,
// numbers, keywords, header keys) in one linear pass, and an editor lays
// the coloured copy under a transparent textarea. It never evaluates the
// code and builds the copy with text nodes only, so any text is safe.
import { h } from './dom.js';

const KEYWORDS = new Set(('async await break case catch class const continue debugger default delete do else export extends ' +
  'false finally for function if import in instanceof let new null of return static super switch this throw true try ' +
  'typeof undefined var void while with yield').split(' '));

// tokens returns [kind, text] pairs that join to src; kind is '' for
// plain text.
export function tokens(src) {
  const out = [];
  let i = 0;
  let plain = '';
  let prev = ''; // last significant token kind or char, to tell / apart
  const push = (kind, text) => {
    if (plain) {
      out.push(['', plain]);
      plain = '';
    }
    out.push([kind, text]);
  };
  const n = src.length;
  while (i < n) {
    const c = src[i];
    const d = src[i + 1];
    if (c === '/' && d === '/') {
      let j = src.indexOf('\n', i);
      if (j < 0) j = n;
      const text = src.slice(i, j);
      const m = /^(\/\/\s*)(@\w+)(.*)$/.exec(text);
      if (m) {
        push('comment', m[1]);
        push('meta', m[2]);
        push('comment', m[3]);
      } else push('comment', text);
      i = j;
    } else if (c === '/' && d === '*') {
      let j = src.indexOf('*/', i + 2);
      j = j < 0 ? n : j + 2;
      push('comment', src.slice(i, j));
      i = j;
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < n && src[j] !== c) {
        if (src[j] === '\\') j++;
        else if (src[j] === '\n' && c !== '`') break;
        j++;
      }
      j = Math.min(n, j + 1);
      push('string', src.slice(i, j));
      prev = 'value';
      i = j;
    } else if (c === '/' && !(prev === 'value' || prev === ')' || prev === ']')) {
      // A regular expression where a value may start.
      let j = i + 1;
      let cls = false;
      while (j < n && src[j] !== '\n' && (cls || src[j] !== '/')) {
        if (src[j] === '\\') j++;
        else if (src[j] === '[') cls = true;
        else if (src[j] === ']') cls = false;
        j++;
      }
      if (j < n && src[j] === '/') {
        j++;
        while (j < n && /[a-z]/.test(src[j])) j++;
        push('regexp', src.slice(i, j));
        prev = 'value';
        i = j;
      } else {
        plain += c;
        prev = c;
        i++;
      }
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(d || ''))) {
      let j = i + 1;
      while (j < n && /[0-9a-fA-FxXoObBn_.eE]/.test(src[j])) j++;
      push('number', src.slice(i, j));
      prev = 'value';
      i = j;
    } else if (/[A-Za-z_$]/.test(c)) {
      let j = i + 1;
      while (j < n && /[\w$]/.test(src[j])) j++;
      const w = src.slice(i, j);
      if (KEYWORDS.has(w)) {
        push('keyword', w);
        prev = w === 'this' || w === 'true' || w === 'false' || w === 'null' || w === 'undefined' ? 'value' : 'keyword';
      } else {
        plain += w;
        prev = 'value';
      }
      i = j;
    } else {
      plain += c;
      if (!/\s/.test(c)) prev = c;
      i++;
    }
  }
  if (plain) out.push(['', plain]);
  return out;
}

// render fills el with the highlighted source.
export function render(el, src) {
  const parts = tokens(src).map(([kind, text]) => (kind ? h('span', { class: `tok-${kind}` }, text) : document.createTextNode(text)));
  // A trailing newline needs something after it to take up its line.
  parts.push(document.createTextNode('\n'));
  el.replaceChildren(...parts);
}

// editor makes a highlighted code editor: a textarea (which the user
// types in, and which keeps undo, selection and IME) over a <pre> that
// shows the same text in colour. It returns {el, textarea, get, set}.
export function editor({ id, value = '', label = '' }) {
  const code = h('code', { class: 'code-layer' });
  const pre = h('pre', { class: 'code-pre', 'aria-hidden': 'true' }, code);
  const ta = h('textarea', { id, class: 'code-input', spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', 'aria-label': label, wrap: 'off' });
  const el = h('div', { class: 'code-editor' }, pre, ta);
  const paint = () => {
    render(code, ta.value);
    pre.scrollTop = ta.scrollTop;
    pre.scrollLeft = ta.scrollLeft;
  };
  ta.addEventListener('input', paint);
  ta.addEventListener('scroll', () => {
    pre.scrollTop = ta.scrollTop;
    pre.scrollLeft = ta.scrollLeft;
  });
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Tab' && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      const { selectionStart: s, selectionEnd: end } = ta;
      ta.setRangeText('  ', s, end, 'end');
      paint();
    }
  });
  ta.value = value;
  paint();
  return {
    el,
    textarea: ta,
    get: () => ta.value,
    set: (v) => {
      ta.value = v;
      paint();
    },
  };
}
