// Small DOM helpers. Text always goes in through textContent, never as
// HTML: names and other strings come from remote nodes.

// h creates an element: h('td', {class: 'num'}, child, 'text', ...).
// Attributes that are null, undefined or false are left out.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// shortID is the first 8 characters of a node ID, as mesh.ID.Short.
export function shortID(id) {
  return id.length > 8 ? id.slice(0, 8) : id;
}

// countRead counts on el, as data-WHAT, the answers of one kind of GET a
// view has read, whether it kept them or not: a test that holds a GET
// waits for this to know the view has had the answer. route (app.js)
// clears them when another view mounts.
export function countRead(el, what) {
  el.dataset[what] = String(Number(el.dataset[what] || 0) + 1);
}
