// A small force-directed layout (Fruchterman–Reingold with gravity), for
// drawing the mesh. It holds each node's position across updates, so a
// graph that changes a little moves a little: nodes that were already
// placed keep their place and barely move, new nodes start next to their
// neighbours. Work is done in ticks, a bounded number per change, so the
// caller can spread it over animation frames.

// LINK is the ideal length of a link, in layout units.
export const LINK = 70;

const FRESH_TICKS = 300; // a graph laid out from scratch
const UPDATE_TICKS = 120; // after a change to a laid-out graph
const SETTLED_MOBILITY = 0.06; // how freely old nodes move after a change
// GRAVITY pulls toward the centre, in proportion to the distance: it keeps
// parts that no link joins together; a disc of n unlinked nodes has a
// radius of about LINK·√(n/GRAVITY).
const GRAVITY = 0.3;
const MIN_TEMP = 0.3; // stop when no node may move further than this

// hash is FNV-1a of a string, as a seed: the same ID always lands in the
// same place, so layouts are reproducible.
function hash(s) {
  let x = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    x ^= s.charCodeAt(i);
    x = Math.imul(x, 0x01000193);
  }
  return x >>> 0;
}

// jitter is a point at most r from the origin, fixed by seed.
function jitter(seed, r) {
  const a = ((seed & 0xffff) / 0x10000) * 2 * Math.PI;
  const d = r * (0.5 + ((seed >>> 16) / 0x10000) * 0.5);
  return [Math.cos(a) * d, Math.sin(a) * d];
}

export class Layout {
  constructor() {
    this.pos = new Map(); // id → {x, y}; kept across updates
    this.ids = []; // node order of the arrays below
    this.xs = new Float64Array(0);
    this.ys = new Float64Array(0);
    this.mobility = new Float64Array(0);
    this.links = []; // [i, j] index pairs
    this.tick0 = 0; // ticks this run started with
    this.ticksLeft = 0;
    this.temp0 = 0;
    // aspect is the width/height of the drawing: gravity is weaker
    // sideways by its square root, so the graph spreads into a wide box.
    this.aspect = 1;
    this.anchor = null; // {old: indices, x, y}: keep the old nodes' centre here
  }

  // get returns the position of id, or undefined.
  get(id) {
    return this.pos.get(id);
  }

  // running reports whether ticks are left to do.
  get running() {
    return this.ticksLeft > 0;
  }

  // set replaces the graph: ids are the nodes (first is placed first when
  // nothing is placed yet, e.g. this node), links are [idA, idB] pairs. It
  // starts a run of ticks when anything changed.
  set(ids, links) {
    const fresh = this.pos.size === 0;
    const keep = new Set(ids);
    for (const id of this.pos.keys()) if (!keep.has(id)) this.pos.delete(id);

    const adj = new Map(ids.map((id) => [id, []]));
    for (const [a, b] of links) {
      adj.get(a).push(b);
      adj.get(b).push(a);
    }
    const added = new Set(ids.filter((id) => !this.pos.has(id)));
    this.place(ids, adj, added);

    this.ids = ids;
    const n = ids.length;
    const index = new Map(ids.map((id, i) => [id, i]));
    this.xs = new Float64Array(n);
    this.ys = new Float64Array(n);
    this.mobility = new Float64Array(n);
    ids.forEach((id, i) => {
      const p = this.pos.get(id);
      this.xs[i] = p.x;
      this.ys[i] = p.y;
      this.mobility[i] = fresh || added.has(id) ? 1 : SETTLED_MOBILITY;
    });
    this.links = links.map(([a, b]) => [index.get(a), index.get(b)]);
    // After a change, the nodes that were there keep their centre: the
    // forces of new nodes would otherwise slide the whole picture.
    this.anchor = null;
    const old = fresh ? [] : ids.flatMap((id, i) => (added.has(id) ? [] : [i]));
    if (old.length > 0) this.anchor = { old, ...this.centre(old) };
    this.tick0 = this.ticksLeft = fresh ? FRESH_TICKS : UPDATE_TICKS;
    this.temp0 = fresh ? LINK * 1.5 : LINK * 0.6;
  }

  // place gives the nodes in added a starting position: next to their
  // placed neighbours when they have any, else on a ring around the graph.
  place(ids, adj, added) {
    let left = ids.filter((id) => added.has(id));
    while (left.length > 0) {
      const next = [];
      let progress = false;
      for (const id of left) {
        const near = adj.get(id).map((n) => this.pos.get(n)).filter(Boolean);
        if (near.length === 0) {
          next.push(id);
          continue;
        }
        const x = near.reduce((s, p) => s + p.x, 0) / near.length;
        const y = near.reduce((s, p) => s + p.y, 0) / near.length;
        const [jx, jy] = jitter(hash(id), LINK * 0.7);
        this.pos.set(id, { x: x + jx, y: y + jy });
        progress = true;
      }
      if (!progress) {
        // Nothing attaches to what is placed: start a new component at
        // the rim, from its first node.
        const id = next.shift();
        this.pos.set(id, this.rim(id));
      }
      left = next;
    }
  }

  // rim is a spot just outside what is placed, or the origin.
  rim(id) {
    if (this.pos.size === 0) return { x: 0, y: 0 };
    let r = 0;
    for (const p of this.pos.values()) r = Math.max(r, Math.hypot(p.x, p.y));
    const [x, y] = jitter(hash(id) | 0x80000000, 1);
    const d = Math.hypot(x, y) || 1;
    return { x: (x / d) * (r + LINK), y: (y / d) * (r + LINK) };
  }

  // tick does one step of the simulation. It costs O(n² + links).
  tick() {
    if (this.ticksLeft <= 0) return;
    const { xs, ys, mobility } = this;
    const n = xs.length;
    const dx = new Float64Array(n);
    const dy = new Float64Array(n);
    const k2 = LINK * LINK;
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        let ddx = xs[i] - xs[j];
        let ddy = ys[i] - ys[j];
        let d2 = ddx * ddx + ddy * ddy;
        if (d2 < 1e-4) {
          // Two nodes on one spot: push them apart in a fixed direction.
          ddx = ((i * 7 + j) % 5) - 2 || 1;
          ddy = ((i + j * 3) % 5) - 2 || 1;
          d2 = ddx * ddx + ddy * ddy;
        }
        const f = k2 / d2; // force k²/d along the unit vector
        dx[i] += ddx * f;
        dy[i] += ddy * f;
        dx[j] -= ddx * f;
        dy[j] -= ddy * f;
      }
    }
    for (const [i, j] of this.links) {
      const ddx = xs[i] - xs[j];
      const ddy = ys[i] - ys[j];
      const f = Math.sqrt(ddx * ddx + ddy * ddy) / LINK; // d²/k along the unit vector
      dx[i] -= ddx * f;
      dy[i] -= ddy * f;
      dx[j] += ddx * f;
      dy[j] += ddy * f;
    }
    // Linear cooling: the bound on a step falls to MIN_TEMP at the end.
    const temp = MIN_TEMP + (this.temp0 - MIN_TEMP) * (this.ticksLeft / this.tick0);
    const stretch = Math.sqrt(Math.min(Math.max(this.aspect, 0.5), 2.5));
    const gravX = GRAVITY / stretch;
    const gravY = GRAVITY * stretch;
    for (let i = 0; i < n; i++) {
      const gx = dx[i] - xs[i] * gravX;
      const gy = dy[i] - ys[i] * gravY;
      const len = Math.sqrt(gx * gx + gy * gy);
      if (len === 0) continue;
      const step = Math.min(len, temp) * mobility[i];
      xs[i] += (gx / len) * step;
      ys[i] += (gy / len) * step;
    }
    if (this.anchor) {
      const c = this.centre(this.anchor.old);
      const sx = c.x - this.anchor.x;
      const sy = c.y - this.anchor.y;
      for (let i = 0; i < n; i++) {
        xs[i] -= sx;
        ys[i] -= sy;
      }
    }
    this.ticksLeft--;
    if (this.ticksLeft === 0) this.commit();
  }

  // centre is the mean position of the nodes at the indices.
  centre(indices) {
    let x = 0;
    let y = 0;
    for (const i of indices) {
      x += this.xs[i];
      y += this.ys[i];
    }
    return { x: x / indices.length, y: y / indices.length };
  }

  // commit copies the arrays back to the kept positions.
  commit() {
    this.ids.forEach((id, i) => this.pos.set(id, { x: this.xs[i], y: this.ys[i] }));
  }

  // at returns the current position of the node at index i.
  at(i) {
    return [this.xs[i], this.ys[i]];
  }
}
