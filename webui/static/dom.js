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

// freshness keeps a view from showing a GET's answer that is older than
// what it shows already: an answer can be read after an event that came
// while it was on its way, or after the answer of a read begun later.
//
//   const fresh = freshness();
//   events.on('x', (v) => { fresh.touch(); show(v); });
//   const ticket = fresh.begin();          // just before the GET
//   const got = await getJSON('api/x');
//   if (ticket.fresh()) show(got);
//
// ticket.fresh() is true unless touch() was called, or another ticket
// begun later answered fresh(), since the ticket began; when true, the
// answer counts as shown from then on, so older tickets go stale. For
// answers that list items an event may change one at a time, touch(key)
// marks one item changed (and not the answer), and ticket.changed(key)
// says whether it was since the ticket began.
export function freshness() {
  let clock = 0; // counts begin() and touch()
  let shown = 0; // clock of the newest state shown: an event or an answer
  const touched = new Map(); // key → clock of its last touch(key)
  return {
    begin() {
      const at = ++clock;
      return {
        fresh() {
          if (shown > at) return false;
          shown = at;
          return true;
        },
        changed: (key) => (touched.get(key) || 0) > at,
      };
    },
    touch(key) {
      if (key === undefined) shown = ++clock;
      else touched.set(key, ++clock);
    },
  };
}
